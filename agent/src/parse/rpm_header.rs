//! RPM package headers as rpm's SQLite database stores them (`Packages.blob` in
//! `rpmdb.sqlite`): an index of tagged entries over a data store, all big-endian.

/// The tags of one installed package that the inventory keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RpmHeader {
    pub name: String,
    pub version: String,
    pub release: String,
    /// `None` when the header has no EPOCH tag (which rpm treats as epoch 0).
    pub epoch: Option<u32>,
    pub arch: String,
    /// The source package file, e.g. `openssl-3.0.7-6.el9.src.rpm`; see [`source_name`].
    pub source_rpm: String,
    pub vendor: String,
    pub license: String,
    /// Installed size in bytes: LONGSIZE when present, else SIZE, else 0.
    pub size: u64,
}

/// The magic and reserved bytes that precede a header in `.rpm` files (and in
/// the older Berkeley DB / NDB databases); the SQLite blob starts without them.
const HEADER_MAGIC: [u8; 8] = [0x8e, 0xad, 0xe8, 0x01, 0, 0, 0, 0];

const TYPE_INT16: u32 = 3;
const TYPE_INT32: u32 = 4;
const TYPE_INT64: u32 = 5;
const TYPE_STRING: u32 = 6;
const TYPE_STRING_ARRAY: u32 = 8;
const TYPE_I18NSTRING: u32 = 9;

const TAG_NAME: u32 = 1000;
const TAG_VERSION: u32 = 1001;
const TAG_RELEASE: u32 = 1002;
const TAG_EPOCH: u32 = 1003;
const TAG_SIZE: u32 = 1009;
const TAG_VENDOR: u32 = 1011;
const TAG_LICENSE: u32 = 1014;
const TAG_ARCH: u32 = 1022;
const TAG_SOURCERPM: u32 = 1044;
const TAG_LONGSIZE: u32 = 5009;

/// Parses one header blob, with or without the 8-byte header magic. Only the
/// entries of the tags [`RpmHeader`] keeps are decoded and bounds-checked; a damaged
/// entry of another tag costs nothing. The first entry of a tag wins. Errs when the
/// blob is truncated, an entry we read is out of bounds or of the wrong type, or the
/// header has no NAME.
pub fn parse(blob: &[u8]) -> Result<RpmHeader, String> {
    let header = blob.strip_prefix(&HEADER_MAGIC[..]).unwrap_or(blob);
    let (Some(il), Some(dl)) = (be_u32(header, 0), be_u32(header, 4)) else {
        return Err(format!(
            "header is {} bytes, too short for the index and data lengths",
            header.len()
        ));
    };
    // Computed in u64 so that no il or dl can overflow; this caps both by the
    // blob's real length before anything is read.
    let needed = 8 + u64::from(il) * 16 + u64::from(dl);
    if needed > header.len() as u64 {
        return Err(format!(
            "header declares {il} index entries and {dl} data bytes ({needed} bytes), \
             but only {} bytes are present",
            header.len()
        ));
    }
    let index_end = 8 + il as usize * 16;
    let index = header.get(8..index_end).unwrap_or_default();
    let data = header
        .get(index_end..index_end + dl as usize)
        .unwrap_or_default();
    let entries: Vec<Entry> = index
        .chunks_exact(16)
        .enumerate()
        .map(|(number, raw)| Entry {
            number,
            tag: be_u32(raw, 0).unwrap_or_default(),
            kind: be_u32(raw, 4).unwrap_or_default(),
            offset: be_u32(raw, 8).unwrap_or_default(),
            count: be_u32(raw, 12).unwrap_or_default(),
        })
        .collect();
    let store = Store {
        entries: &entries,
        data,
    };
    let name = store.string(TAG_NAME)?.unwrap_or_default();
    if name.is_empty() {
        return Err("header has no NAME (tag 1000)".to_string());
    }
    let size = match store.int(TAG_LONGSIZE)? {
        Some(size) => size,
        None => store.int(TAG_SIZE)?.unwrap_or(0),
    };
    let epoch = match store.int(TAG_EPOCH)? {
        Some(epoch) => Some(
            u32::try_from(epoch).map_err(|_| format!("epoch {epoch} does not fit in 32 bits"))?,
        ),
        None => None,
    };
    Ok(RpmHeader {
        name,
        version: store.string(TAG_VERSION)?.unwrap_or_default(),
        release: store.string(TAG_RELEASE)?.unwrap_or_default(),
        epoch,
        arch: store.string(TAG_ARCH)?.unwrap_or_default(),
        source_rpm: store.string(TAG_SOURCERPM)?.unwrap_or_default(),
        vendor: store.string(TAG_VENDOR)?.unwrap_or_default(),
        license: store.string(TAG_LICENSE)?.unwrap_or_default(),
        size,
    })
}

/// The source package name of a SOURCERPM value: `openssl-3.0.7-6.el9.src.rpm`
/// gives `openssl`. `None` when the value is not `name-version-release.src.rpm`
/// (or `.nosrc.rpm`).
pub fn source_name(source_rpm: &str) -> Option<&str> {
    let stem = source_rpm
        .strip_suffix(".src.rpm")
        .or_else(|| source_rpm.strip_suffix(".nosrc.rpm"))?;
    let mut parts = stem.rsplitn(3, '-');
    let _release = parts.next().filter(|p| !p.is_empty())?;
    let _version = parts.next().filter(|p| !p.is_empty())?;
    parts.next().filter(|name| !name.is_empty())
}

struct Entry {
    number: usize,
    tag: u32,
    kind: u32,
    offset: u32,
    count: u32,
}

impl Entry {
    fn describe(&self) -> String {
        format!("index entry {} (tag {})", self.number, self.tag)
    }
}

struct Store<'a> {
    entries: &'a [Entry],
    data: &'a [u8],
}

impl Store<'_> {
    fn find(&self, tag: u32) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.tag == tag)
    }

    /// The data from the entry's offset to the end of the data store.
    fn tail(&self, entry: &Entry) -> Result<&[u8], String> {
        self.data
            .get(entry.offset as usize..)
            .filter(|tail| !tail.is_empty())
            .ok_or_else(|| format!("{} points outside the data store", entry.describe()))
    }

    /// A STRING, or the first string of a STRING_ARRAY or I18NSTRING.
    fn string(&self, tag: u32) -> Result<Option<String>, String> {
        let Some(entry) = self.find(tag) else {
            return Ok(None);
        };
        if !matches!(
            entry.kind,
            TYPE_STRING | TYPE_STRING_ARRAY | TYPE_I18NSTRING
        ) {
            return Err(format!(
                "{} has type {}, expected a string",
                entry.describe(),
                entry.kind
            ));
        }
        if entry.count == 0 {
            return Err(format!("{} has a count of 0", entry.describe()));
        }
        let tail = self.tail(entry)?;
        let end = tail.iter().position(|&b| b == 0).ok_or_else(|| {
            format!(
                "{} has a string not NUL-terminated within the data store",
                entry.describe()
            )
        })?;
        // Old packages carry Latin-1 vendors and licenses: keep what is readable.
        Ok(Some(
            String::from_utf8_lossy(tail.get(..end).unwrap_or_default()).into_owned(),
        ))
    }

    /// The first value of an INT16, INT32 or INT64 entry.
    fn int(&self, tag: u32) -> Result<Option<u64>, String> {
        let Some(entry) = self.find(tag) else {
            return Ok(None);
        };
        let width = match entry.kind {
            TYPE_INT16 => 2,
            TYPE_INT32 => 4,
            TYPE_INT64 => 8,
            kind => {
                return Err(format!(
                    "{} has type {kind}, expected an integer",
                    entry.describe()
                ));
            }
        };
        if entry.count == 0 {
            return Err(format!("{} has a count of 0", entry.describe()));
        }
        let bytes = self.tail(entry)?.get(..width).ok_or_else(|| {
            format!(
                "{} has a {width}-byte integer running past the data store",
                entry.describe()
            )
        })?;
        Ok(Some(
            bytes
                .iter()
                .fold(0u64, |value, &b| (value << 8) | u64::from(b)),
        ))
    }
}

fn be_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_be_bytes(raw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::xorshift;

    const TYPE_BIN: u32 = 7;

    enum Value<'a> {
        Str(&'a str),
        Latin1(&'a [u8]),
        Strings(&'a [&'a str]),
        I18n(&'a str),
        Int32(u32),
        Int64(u64),
        Bin(&'a [u8]),
    }

    /// Lays out a header blob: the two lengths, the index, then the data store,
    /// aligning integers as rpm does.
    fn blob(entries: &[(u32, Value)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, value) in entries {
            let align = match value {
                Value::Int32(_) => 4,
                Value::Int64(_) => 8,
                _ => 1,
            };
            while data.len() % align != 0 {
                data.push(0);
            }
            let offset = data.len() as u32;
            let (kind, count) = match value {
                Value::Str(s) => {
                    data.extend_from_slice(s.as_bytes());
                    data.push(0);
                    (TYPE_STRING, 1)
                }
                Value::Latin1(s) => {
                    data.extend_from_slice(s);
                    data.push(0);
                    (TYPE_STRING, 1)
                }
                Value::I18n(s) => {
                    data.extend_from_slice(s.as_bytes());
                    data.push(0);
                    (TYPE_I18NSTRING, 1)
                }
                Value::Strings(list) => {
                    for s in *list {
                        data.extend_from_slice(s.as_bytes());
                        data.push(0);
                    }
                    (TYPE_STRING_ARRAY, list.len() as u32)
                }
                Value::Int32(v) => {
                    data.extend_from_slice(&v.to_be_bytes());
                    (TYPE_INT32, 1)
                }
                Value::Int64(v) => {
                    data.extend_from_slice(&v.to_be_bytes());
                    (TYPE_INT64, 1)
                }
                Value::Bin(b) => {
                    data.extend_from_slice(b);
                    (TYPE_BIN, b.len() as u32)
                }
            };
            for field in [*tag, kind, offset, count] {
                index.extend_from_slice(&field.to_be_bytes());
            }
        }
        let mut blob = Vec::new();
        blob.extend_from_slice(&(entries.len() as u32).to_be_bytes());
        blob.extend_from_slice(&(data.len() as u32).to_be_bytes());
        blob.extend_from_slice(&index);
        blob.extend_from_slice(&data);
        blob
    }

    fn openssl() -> Vec<u8> {
        blob(&[
            // The immutable region trailer real headers start with.
            (
                63,
                Value::Bin(&[0, 0, 0, 63, 0, 0, 0, 7, 0xff, 0xff, 0xfe, 0x70, 0, 0, 0, 16]),
            ),
            (TAG_NAME, Value::Str("openssl-libs")),
            (TAG_VERSION, Value::Str("3.0.7")),
            (TAG_RELEASE, Value::Str("6.el9")),
            (TAG_EPOCH, Value::Int32(1)),
            (1004, Value::I18n("A general purpose cryptography library")),
            (TAG_SIZE, Value::Int32(6_000_000)),
            (
                TAG_VENDOR,
                Value::Str("Rocky Enterprise Software Foundation"),
            ),
            (TAG_LICENSE, Value::Str("ASL 2.0")),
            (TAG_ARCH, Value::Str("x86_64")),
            (TAG_SOURCERPM, Value::Str("openssl-3.0.7-6.el9.src.rpm")),
            (
                1047,
                Value::Strings(&["libcrypto.so.3()(64bit)", "openssl-libs"]),
            ),
            (TAG_LONGSIZE, Value::Int64(6_500_000_000)),
        ])
    }

    #[test]
    fn parses_a_header_with_a_region_tag() {
        let header = parse(&openssl()).unwrap();
        assert_eq!(
            header,
            RpmHeader {
                name: "openssl-libs".into(),
                version: "3.0.7".into(),
                release: "6.el9".into(),
                epoch: Some(1),
                arch: "x86_64".into(),
                source_rpm: "openssl-3.0.7-6.el9.src.rpm".into(),
                vendor: "Rocky Enterprise Software Foundation".into(),
                license: "ASL 2.0".into(),
                size: 6_500_000_000,
            }
        );
    }

    #[test]
    fn accepts_the_header_magic_and_trailing_bytes() {
        let mut with_magic = HEADER_MAGIC.to_vec();
        with_magic.extend_from_slice(&openssl());
        with_magic.extend_from_slice(b"trailing");
        assert_eq!(parse(&with_magic).unwrap(), parse(&openssl()).unwrap());
    }

    #[test]
    fn missing_optional_tags_size_fallback_and_string_kinds() {
        let header = parse(&blob(&[
            (TAG_NAME, Value::Strings(&["gpg-pubkey", "ignored"])),
            (TAG_VERSION, Value::I18n("fd431d51")),
            (TAG_SIZE, Value::Int32(4096)),
        ]))
        .unwrap();
        assert_eq!(header.name, "gpg-pubkey");
        assert_eq!(header.version, "fd431d51");
        assert_eq!((header.epoch, header.size), (None, 4096));
        assert_eq!(header.arch, "");
        assert_eq!(
            parse(&blob(&[(TAG_NAME, Value::Str("a"))])).unwrap().size,
            0
        );
        // Non-UTF-8 strings are kept as far as readable.
        let header = parse(&blob(&[
            (TAG_NAME, Value::Str("a")),
            (TAG_VENDOR, Value::Latin1(b"Caf\xe9 SA")),
        ]));
        assert_eq!(header.unwrap().vendor, "Caf\u{fffd} SA");
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |blob: &[u8]| parse(blob).unwrap_err();
        assert!(err(&[0, 0, 0]).contains("too short"));
        assert!(err(&blob(&[(TAG_VERSION, Value::Str("1"))])).contains("no NAME"));
        assert!(err(&blob(&[(TAG_NAME, Value::Str(""))])).contains("no NAME"));
        assert!(err(&blob(&[(TAG_NAME, Value::Int32(5))])).contains("expected a string"));
        assert!(
            err(&blob(&[
                (TAG_NAME, Value::Str("a")),
                (TAG_VENDOR, Value::Bin(b"x\0"))
            ]))
            .contains("index entry 1 (tag 1011) has type 7")
        );
        assert!(
            err(&blob(&[
                (TAG_NAME, Value::Str("a")),
                (TAG_EPOCH, Value::Str("1"))
            ]))
            .contains("expected an integer")
        );

        // il and dl larger than the blob.
        let mut huge = openssl();
        huge[..4].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(err(&huge).contains("only"), "{}", err(&huge));
        let mut huge = openssl();
        huge[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(err(&huge).contains("only"));

        // Entry 1 (NAME) pointing past the data store.
        let mut bad = blob(&[(63, Value::Bin(&[0; 16])), (TAG_NAME, Value::Str("a"))]);
        let offset_at = 8 + 16 + 8;
        bad[offset_at..offset_at + 4].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(
            err(&bad),
            "index entry 1 (tag 1000) points outside the data store"
        );
        // A negative offset.
        bad[offset_at..offset_at + 4].copy_from_slice(&(-4i32).to_be_bytes());
        assert!(err(&bad).contains("outside the data store"));

        // A string running to the end of the data store without its NUL.
        let mut unterminated = blob(&[(TAG_NAME, Value::Str("abc"))]);
        unterminated.pop();
        unterminated[4..8].copy_from_slice(&3u32.to_be_bytes());
        assert!(err(&unterminated).contains("not NUL-terminated"));

        // An integer cut by the end of the data store.
        let mut short = blob(&[
            (TAG_NAME, Value::Str("abc")),
            (TAG_LONGSIZE, Value::Int64(1)),
        ]);
        let len = short.len();
        short.truncate(len - 4);
        short[4..8].copy_from_slice(&12u32.to_be_bytes());
        assert!(err(&short).contains("running past the data store"));
    }

    #[test]
    fn source_names() {
        assert_eq!(source_name("openssl-3.0.7-6.el9.src.rpm"), Some("openssl"));
        assert_eq!(
            source_name("python-setuptools-53.0.0-12.el9.nosrc.rpm"),
            Some("python-setuptools")
        );
        assert_eq!(source_name("a-1-1.src.rpm"), Some("a"));
        assert_eq!(source_name("openssl-3.0.7.src.rpm"), None);
        assert_eq!(source_name("-1-1.src.rpm"), None);
        assert_eq!(source_name("(none)"), None);
        assert_eq!(source_name(""), None);
    }

    #[test]
    fn truncations_mutations_and_garbage_do_not_panic() {
        let valid = openssl();
        for len in 0..valid.len() {
            let _ = parse(&valid[..len]);
        }
        let mut state = 0x1234_5678_9abc_def1_u64;
        for _ in 0..5000 {
            let mut mutated = valid.clone();
            for _ in 0..(1 + xorshift(&mut state) % 4) {
                let at = xorshift(&mut state) as usize % mutated.len();
                mutated[at] = xorshift(&mut state) as u8;
            }
            let _ = parse(&mutated);
        }
        for _ in 0..2000 {
            let len = xorshift(&mut state) % 128;
            let bytes: Vec<u8> = (0..len).map(|_| xorshift(&mut state) as u8).collect();
            let _ = parse(&bytes);
        }
    }
}

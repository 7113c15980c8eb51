//! The build information Go (1.18 and later) embeds in every binary: the toolchain
//! version, the main module, the dependency modules and the build settings.

/// One module: the main module, a dependency, or a dependency's replacement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoModule {
    pub path: String,
    pub version: String,
    /// The `h1:` checksum; empty for the main module and for local replacements.
    pub sum: String,
}

/// The build information of one Go binary.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GoBuildInfo {
    /// The toolchain that built the binary, e.g. `go1.21.5`.
    pub go_version: String,
    /// `None` for binaries built outside module mode.
    pub main: Option<GoModule>,
    /// Dependencies in build order; a replaced dependency carries its replacement's
    /// path, version and sum.
    pub deps: Vec<GoModule>,
    /// `build` lines (`-ldflags`, `GOARCH`, `vcs.revision`, ...), quoting removed.
    pub settings: Vec<(String, String)>,
}

/// The bytes the build information starts with, aligned to 16 in the data section.
pub const MAGIC: &[u8] = b"\xff Go buildinf:";

/// Size of the header before the inline strings: magic, pointer size, flags, and
/// two pointer slots that the inline format leaves unused.
const HEADER_LEN: usize = 32;
/// Set when the version and modinfo follow the header as length-prefixed strings
/// (Go 1.18 and later) rather than as pointers to Go string headers.
const FLAG_INLINE_STRINGS: u8 = 0x2;
/// The sentinels `cmd/go` wraps the modinfo string in.
const MODINFO_START: [u8; 16] = [
    0x30, 0x77, 0xaf, 0x0c, 0x92, 0x74, 0x08, 0x02, 0x41, 0xe1, 0xc1, 0x07, 0xe6, 0xd6, 0x18, 0xe6,
];
const MODINFO_END: [u8; 16] = [
    0xf9, 0x32, 0x43, 0x31, 0x86, 0x18, 0x20, 0x72, 0x00, 0x82, 0x42, 0x10, 0x41, 0x16, 0xd8, 0xf2,
];

/// Parses the build information at the start of `bytes`, which must begin with
/// [`MAGIC`]. `None` when the header is not the inline-strings format of Go 1.18+
/// (older binaries point into the data segment instead), when its pointer size is
/// not 4 or 8, when a string runs past `bytes`, or when the Go version is empty.
pub fn parse_at(bytes: &[u8]) -> Option<GoBuildInfo> {
    let header = bytes.get(..HEADER_LEN)?;
    let (&ptr_size, &flags) = (header.get(MAGIC.len())?, header.get(MAGIC.len() + 1)?);
    if !header.starts_with(MAGIC) || flags & FLAG_INLINE_STRINGS == 0 {
        return None;
    }
    // The inline format does not need the pointer size, but a real header always
    // has one: checking it rejects MAGIC found as a string literal in other code.
    if ptr_size != 4 && ptr_size != 8 {
        return None;
    }
    let (version, rest) = length_prefixed(bytes.get(HEADER_LEN..)?)?;
    let (modinfo, _) = length_prefixed(rest)?;
    if version.is_empty() {
        return None;
    }
    let mut info = GoBuildInfo {
        go_version: String::from_utf8_lossy(version).into_owned(),
        ..GoBuildInfo::default()
    };
    parse_modinfo(&mut info, strip_sentinels(modinfo));
    Some(info)
}

/// Finds [`MAGIC`] anywhere in `bytes` (a whole executable) and parses the build
/// information there. Occurrences that do not parse (the magic quoted as a string
/// constant, for instance) are passed over.
pub fn find(bytes: &[u8]) -> Option<GoBuildInfo> {
    let mut from = 0;
    while let Some(found) = bytes.get(from..)?.iter().position(|&b| b == MAGIC[0]) {
        let at = from + found;
        let candidate = bytes.get(at..)?;
        if candidate.starts_with(MAGIC)
            && let Some(info) = parse_at(candidate)
        {
            return Some(info);
        }
        from = at + 1;
    }
    None
}

/// A uvarint length followed by that many bytes, and what follows them.
fn length_prefixed(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut len: u64 = 0;
    let mut consumed = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let shift = 7 * i as u32;
        // The tenth byte may only carry the top bit of a u64.
        if i == 9 && b > 1 {
            return None;
        }
        len |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            consumed = i + 1;
            break;
        }
    }
    if consumed == 0 {
        return None;
    }
    let rest = bytes.get(consumed..)?;
    let len = usize::try_from(len).ok()?;
    if len > rest.len() {
        return None;
    }
    Some(rest.split_at(len))
}

fn strip_sentinels(modinfo: &[u8]) -> &[u8] {
    if modinfo.len() <= 32 {
        return modinfo;
    }
    let modinfo = modinfo.strip_prefix(&MODINFO_START[..]).unwrap_or(modinfo);
    modinfo.strip_suffix(&MODINFO_END[..]).unwrap_or(modinfo)
}

/// Which module a `=>` replacement line applies to.
enum Last {
    None,
    Main,
    Dep(usize),
}

/// Reads the modinfo lines the way `runtime/debug.ParseBuildInfo` does, except
/// that a malformed line is passed over instead of failing the whole binary.
fn parse_modinfo(info: &mut GoBuildInfo, modinfo: &[u8]) {
    let modinfo = String::from_utf8_lossy(modinfo);
    let mut last = Last::None;
    for line in modinfo.lines() {
        // A malformed module line forgets the last module, so that a replacement
        // after it cannot land on an earlier one.
        if let Some(rest) = line.strip_prefix("mod\t") {
            last = Last::None;
            if let Some(module) = module(rest) {
                info.main = Some(module);
                last = Last::Main;
            }
        } else if let Some(rest) = line.strip_prefix("dep\t") {
            last = Last::None;
            if let Some(module) = module(rest) {
                info.deps.push(module);
                last = Last::Dep(info.deps.len() - 1);
            }
        } else if let Some(rest) = line.strip_prefix("=>\t") {
            let Some(replacement) = module(rest) else {
                continue;
            };
            let target = match last {
                Last::Main => info.main.as_mut(),
                Last::Dep(index) => info.deps.get_mut(index),
                Last::None => None,
            };
            if let Some(target) = target {
                *target = replacement;
            }
            last = Last::None;
        } else if let Some(rest) = line.strip_prefix("build\t")
            && let Some(setting) = build_setting(rest)
        {
            info.settings.push(setting);
        }
        // `path\t<main package>` has no field in GoBuildInfo; other lines are unknown.
    }
}

/// `path\tversion[\tsum]`; a local replacement has an empty version.
fn module(columns: &str) -> Option<GoModule> {
    let mut parts = columns.split('\t');
    let path = parts.next().filter(|p| !p.is_empty())?;
    let version = parts.next()?;
    let sum = parts.next().unwrap_or_default();
    if parts.next().is_some() {
        return None;
    }
    Some(GoModule {
        path: path.to_string(),
        version: version.to_string(),
        sum: sum.to_string(),
    })
}

/// `key=value`, where either may be a Go-quoted string (`-ldflags="-s -w"`).
fn build_setting(kv: &str) -> Option<(String, String)> {
    let (key, raw_value) = if kv.starts_with(['"', '`']) {
        let (key, rest) = quoted_prefix(kv)?;
        (key, rest.strip_prefix('=')?)
    } else {
        let (key, value) = kv.split_once('=')?;
        (key.to_string(), value)
    };
    if key.is_empty() {
        return None;
    }
    let value = match quoted_prefix(raw_value) {
        Some((value, "")) => value,
        _ => raw_value.to_string(),
    };
    Some((key, value))
}

/// Decodes the Go string literal (`"..."` or `` `...` ``) at the start of `s` and
/// returns it with the text after its closing quote.
fn quoted_prefix(s: &str) -> Option<(String, &str)> {
    if let Some(raw) = s.strip_prefix('`') {
        let (value, rest) = raw.split_once('`')?;
        return Some((value.to_string(), rest));
    }
    let body = s.strip_prefix('"')?;
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => {
                let rest = body.get(at + 1..)?;
                return Some((String::from_utf8_lossy(&out).into_owned(), rest));
            }
            '\n' => return None,
            '\\' => {
                let (_, escape) = chars.next()?;
                let simple = match escape {
                    'a' => Some(0x07),
                    'b' => Some(0x08),
                    'f' => Some(0x0c),
                    'n' => Some(b'\n'),
                    'r' => Some(b'\r'),
                    't' => Some(b'\t'),
                    'v' => Some(0x0b),
                    '\\' | '"' | '\'' => Some(escape as u8),
                    _ => None,
                };
                if let Some(byte) = simple {
                    out.push(byte);
                    continue;
                }
                let (digits, radix) = match escape {
                    'x' => (2, 16),
                    'u' => (4, 16),
                    'U' => (8, 16),
                    '0'..='7' => (2, 8),
                    _ => return None,
                };
                let mut value = if radix == 8 { escape.to_digit(8)? } else { 0 };
                for _ in 0..digits {
                    let (_, digit) = chars.next()?;
                    value = value
                        .checked_mul(radix)?
                        .checked_add(digit.to_digit(radix)?)?;
                }
                match escape {
                    // \x and octal escapes are single bytes, not code points.
                    'x' | '0'..='7' => out.push(u8::try_from(value).ok()?),
                    _ => {
                        let mut buf = [0; 4];
                        out.extend_from_slice(
                            char::from_u32(value)?.encode_utf8(&mut buf).as_bytes(),
                        );
                    }
                }
            }
            c => {
                let mut buf = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::xorshift;

    const MODINFO: &str = "path\tgithub.com/containerd/containerd/cmd/containerd
mod\tgithub.com/containerd/containerd\t(devel)\t
dep\tgithub.com/AdaLogics/go-fuzz-headers\tv0.0.0-20230811130428-ced1acdcaa24\th1:bvDV9vkmnHYOMsOr4WLk+Vo07yKIzd94sVoIqshQ4bU=
dep\tgithub.com/containerd/cgroups/v3\tv3.0.2\th1:f5WFqIVSgo5IZmtTT3qVBo6TzI1ON6sycSBKkymb9L0=
dep\tgolang.org/x/net\tv0.17.0
=>\tgolang.org/x/net\tv0.23.0\th1:7EYJ93RZ9vYSZAIb2x3lnuvqO5zneoD6IvWjuhfxjTs=
dep\tgithub.com/example/local\tv1.0.0\th1:abc=
=>\t../local\t\t
build\t-buildmode=exe
build\t-compiler=gc
build\t-ldflags=\"-s -w -X github.com/containerd/containerd/version.Version=1.7.13\"
build\t-tags=\"apparmor,seccomp\"
build\t\"odd key\"=`raw value`
build\tCGO_ENABLED=1
build\tGOARCH=amd64
build\tvcs.revision=7c3aca7a610df76212171d200ca3811ff6096eb8
build\tvcs.modified=false
";

    fn uvarint(mut value: u64, out: &mut Vec<u8>) {
        while value >= 0x80 {
            out.push((value as u8) | 0x80);
            value >>= 7;
        }
        out.push(value as u8);
    }

    fn blob(flags: u8, version: &str, modinfo: &[u8]) -> Vec<u8> {
        let mut blob = MAGIC.to_vec();
        blob.push(8);
        blob.push(flags);
        blob.resize(HEADER_LEN, 0);
        uvarint(version.len() as u64, &mut blob);
        blob.extend_from_slice(version.as_bytes());
        uvarint(modinfo.len() as u64, &mut blob);
        blob.extend_from_slice(modinfo);
        blob
    }

    fn wrapped(modinfo: &str) -> Vec<u8> {
        [&MODINFO_START[..], modinfo.as_bytes(), &MODINFO_END[..]].concat()
    }

    fn module(path: &str, version: &str, sum: &str) -> GoModule {
        GoModule {
            path: path.into(),
            version: version.into(),
            sum: sum.into(),
        }
    }

    #[test]
    fn parses_modules_replacements_and_settings() {
        let info = parse_at(&blob(FLAG_INLINE_STRINGS, "go1.21.5", &wrapped(MODINFO))).unwrap();
        assert_eq!(info.go_version, "go1.21.5");
        assert_eq!(
            info.main,
            Some(module("github.com/containerd/containerd", "(devel)", ""))
        );
        assert_eq!(
            info.deps,
            [
                module(
                    "github.com/AdaLogics/go-fuzz-headers",
                    "v0.0.0-20230811130428-ced1acdcaa24",
                    "h1:bvDV9vkmnHYOMsOr4WLk+Vo07yKIzd94sVoIqshQ4bU="
                ),
                module(
                    "github.com/containerd/cgroups/v3",
                    "v3.0.2",
                    "h1:f5WFqIVSgo5IZmtTT3qVBo6TzI1ON6sycSBKkymb9L0="
                ),
                module(
                    "golang.org/x/net",
                    "v0.23.0",
                    "h1:7EYJ93RZ9vYSZAIb2x3lnuvqO5zneoD6IvWjuhfxjTs="
                ),
                module("../local", "", ""),
            ]
        );
        let settings: Vec<(&str, &str)> = info
            .settings
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            settings,
            [
                ("-buildmode", "exe"),
                ("-compiler", "gc"),
                (
                    "-ldflags",
                    "-s -w -X github.com/containerd/containerd/version.Version=1.7.13"
                ),
                ("-tags", "apparmor,seccomp"),
                ("odd key", "raw value"),
                ("CGO_ENABLED", "1"),
                ("GOARCH", "amd64"),
                ("vcs.revision", "7c3aca7a610df76212171d200ca3811ff6096eb8"),
                ("vcs.modified", "false"),
            ]
        );
    }

    #[test]
    fn odd_but_valid_headers() {
        // Big-endian flag with inline strings, 4-byte pointers, no sentinels, CRLF-free
        // short modinfo, a module-less binary.
        let mut bytes = blob(
            FLAG_INLINE_STRINGS | 1,
            "go1.18",
            b"path\tcommand-line-arguments\n",
        );
        bytes[MAGIC.len()] = 4;
        let info = parse_at(&bytes).unwrap();
        assert_eq!(info.go_version, "go1.18");
        assert_eq!((info.main, info.deps.len()), (None, 0));
        // An empty modinfo, and a replacement of the main module.
        assert_eq!(parse_at(&blob(2, "go1.22.0", b"")).unwrap().main, None);
        let info = parse_at(&blob(
            2,
            "go1.22.0",
            &wrapped("mod\ta\tv1\t\n=>\tb\tv2\th1:x\n"),
        ))
        .unwrap();
        assert_eq!(info.main, Some(module("b", "v2", "h1:x")));
        // A version over 127 bytes needs a two-byte uvarint.
        let long = format!("go1.23{}", "x".repeat(200));
        assert_eq!(parse_at(&blob(2, &long, b"")).unwrap().go_version, long);
    }

    #[test]
    fn malformed_lines_are_passed_over() {
        let modinfo = "dep\tkept\tv1\th1:k\ndep\tonly-path\n=>\torphan\tv1\th1:x\ndep\ta\tv1\th1:a\textra\ndep\t\tv1\nbuild\tnoequals\nbuild\t=v\nbuild\t\"unterminated=1\nbuild\t-tags=\"bad\\q\"\ndep\tok\tv2\th1:ok\n=>\tr\tv3\th1:r\n=>\tr2\tv4\th1:r2\n";
        let info = parse_at(&blob(2, "go1.21.0", &wrapped(modinfo))).unwrap();
        assert_eq!(
            info.deps,
            [module("kept", "v1", "h1:k"), module("r", "v3", "h1:r")]
        );
        // A value whose quoting does not decode is kept as written.
        assert_eq!(
            info.settings,
            [("-tags".to_string(), "\"bad\\q\"".to_string())]
        );
    }

    #[test]
    fn other_formats_and_truncated_strings_are_rejected() {
        assert_eq!(parse_at(&blob(0, "go1.17", b"")), None, "pointer format");
        assert_eq!(
            parse_at(&blob(1, "go1.17", b"")),
            None,
            "big-endian pointers"
        );
        assert_eq!(parse_at(&blob(2, "", b"")), None, "empty version");
        let mut bad_ptr = blob(2, "go1.21", b"");
        bad_ptr[MAGIC.len()] = b'x';
        assert_eq!(parse_at(&bad_ptr), None);
        let mut huge_len = blob(2, "go1.21", b"");
        huge_len.truncate(HEADER_LEN);
        huge_len.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert_eq!(parse_at(&huge_len), None);
        assert_eq!(parse_at(b"\xff Go buildinf:"), None);
        assert_eq!(parse_at(b""), None);
    }

    #[test]
    fn find_skips_junk_and_magic_quoted_as_a_string() {
        let mut binary = b"\x7fELF\xff\xff\xff junk ".to_vec();
        // debug/buildinfo's own constant, followed by other string data.
        binary.extend_from_slice(MAGIC);
        binary.extend_from_slice(b"unexpected EOFinvalid argument and more string data");
        binary.extend_from_slice(&blob(2, "go1.22.1", &wrapped(MODINFO)));
        binary.extend_from_slice(&[0xff; 64]);
        let info = find(&binary).unwrap();
        assert_eq!(info.go_version, "go1.22.1");
        assert_eq!(info.deps.len(), 4);
        assert_eq!(find(b"no magic here \xff Go"), None);
        assert_eq!(find(b""), None);
    }

    #[test]
    fn truncations_mutations_and_garbage_do_not_panic() {
        let valid = blob(2, "go1.21.5", &wrapped(MODINFO));
        for len in 0..valid.len() {
            let _ = parse_at(&valid[..len]);
            let _ = find(&valid[..len]);
        }
        let mut state = 0x0123_4567_89ab_cdef_u64;
        for _ in 0..5000 {
            let mut mutated = valid.clone();
            for _ in 0..(1 + xorshift(&mut state) % 4) {
                let at = xorshift(&mut state) as usize % mutated.len();
                mutated[at] = xorshift(&mut state) as u8;
            }
            let _ = parse_at(&mutated);
        }
        for _ in 0..2000 {
            let len = xorshift(&mut state) % 96;
            let mut bytes = MAGIC.to_vec();
            bytes.extend((0..len).map(|_| xorshift(&mut state) as u8));
            let _ = parse_at(&bytes);
            let _ = find(&bytes);
        }
    }

    #[test]
    fn finds_the_build_info_of_an_installed_go_binary() {
        let Some(path) = ["/usr/bin/dockerd", "/usr/bin/containerd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
        else {
            eprintln!("skipped: neither /usr/bin/dockerd nor /usr/bin/containerd exists");
            return;
        };
        let bytes = std::fs::read(path).unwrap();
        let info = find(&bytes).unwrap_or_else(|| panic!("no build info in {path}"));
        assert!(info.go_version.starts_with("go"), "{path}: {info:?}");
    }
}

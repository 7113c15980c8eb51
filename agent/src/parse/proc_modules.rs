//! `/proc/modules`: one loaded kernel module per line,
//! `name size refcount deps state address [taints]`.
use super::{Parsed, numbered_lines};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub name: String,
    pub size: u64,
    pub refcount: u32,
    pub used_by: Vec<String>,
    pub state: String,
    /// Taint letters without parentheses (`OE`), empty when untainted.
    pub taints: String,
}

pub fn parse(text: &str) -> Parsed<Module> {
    let mut parsed = Parsed::default();
    for (number, line) in numbered_lines(text) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        match parse_row(&fields) {
            Ok(module) => parsed.items.push(module),
            Err(reason) => parsed.skip(number, reason),
        }
    }
    parsed
}

fn parse_row(fields: &[&str]) -> Result<Module, String> {
    if !(5..=7).contains(&fields.len()) {
        return Err(format!("expected 5 to 7 columns, found {}", fields.len()));
    }
    let size = fields[1]
        .parse()
        .map_err(|_| format!("invalid size {:?}", fields[1]))?;
    // "-" when the kernel cannot unload the module and keeps no count.
    let refcount = match fields[2] {
        "-" => 0,
        count => count
            .parse()
            .map_err(|_| format!("invalid refcount {count:?}"))?,
    };
    let used_by = match fields[3] {
        "-" => Vec::new(),
        deps => deps
            .split(',')
            .filter(|d| !d.is_empty())
            .map(str::to_string)
            .collect(),
    };
    let state = fields[4];
    if !matches!(state, "Live" | "Loading" | "Unloading") {
        return Err(format!("invalid state {state:?}"));
    }
    let taints = fields
        .get(6)
        .map(|t| t.trim_start_matches('(').trim_end_matches(')').to_string())
        .unwrap_or_default();
    Ok(Module {
        name: fields[0].to_string(),
        size,
        refcount,
        used_by,
        state: state.to_string(),
        taints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modules_with_deps_and_taints() {
        let text = "\
nft_chain_nat 16384 7 - Live 0x0000000000000000
nf_tables 249856 183 nft_compat,nft_chain_nat, Live 0xffffffffc0a1b000
vboxdrv 532480 2 vboxnetadp,vboxnetflt, Live 0x0000000000000000 (OE)
loading_mod 4096 0 - Loading 0x0000000000000000
";
        let parsed = parse(text);
        assert_eq!(parsed.skipped, vec![]);
        assert_eq!(parsed.items.len(), 4);
        assert_eq!(parsed.items[0].used_by, Vec::<String>::new());
        assert_eq!(parsed.items[1].used_by, ["nft_compat", "nft_chain_nat"]);
        assert_eq!(parsed.items[1].refcount, 183);
        assert_eq!(parsed.items[1].size, 249856);
        assert_eq!(parsed.items[2].taints, "OE");
        assert_eq!(parsed.items[3].state, "Loading");
    }

    #[test]
    fn malformed_lines_are_skipped_with_their_line() {
        let text = "ok 1 0 - Live 0x0\nbad size 0 - Live 0x0\ntoo few\nodd 1 0 - Sleeping 0x0\nfine 2 - - Live 0x0\n";
        let parsed = parse(text);
        let names: Vec<_> = parsed.items.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["ok", "fine"]);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [2, 3, 4]);
        assert!(parsed.skipped[2].reason.contains("Sleeping"));
    }
}

//! Apache httpd configuration files: one directive per (backslash-continued) line,
//! grouped by `<Section args>` ... `</Section>` containers into a tree.
use super::{Parsed, numbered_lines};

/// A directive, or a section container with the directives inside it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApacheDirective {
    /// As written: `Listen`, or for `<VirtualHost *:80>` the section name `VirtualHost`.
    pub name: String,
    /// Arguments with quotes and backslash escapes removed; a `#` after a directive
    /// is an argument, as in httpd.
    pub args: Vec<String>,
    /// 1-based line where the directive (or the section's opening tag) starts.
    pub line: usize,
    /// The directives inside a section; empty for plain directives.
    pub children: Vec<ApacheDirective>,
}

/// Sections nested deeper than this are skipped: real configurations stay within a
/// handful of levels, and the limit bounds recursion over the tree.
const MAX_DEPTH: usize = 128;

/// Parses a whole file; `items` holds the top-level directives. Comment lines
/// (`#` first after whitespace) are ignored and a line ending in a single backslash
/// continues on the next (a comment too, as in httpd). Section closing tags match
/// case-insensitively. A mismatched closing tag or a section left open is reported
/// with its line and the directives parsed so far are kept: an unclosed section
/// keeps its children and ends where its parent ends.
pub fn parse(text: &str) -> Parsed<ApacheDirective> {
    let mut builder = Builder::default();
    let mut pending: Option<(usize, String)> = None;
    for (number, line) in numbered_lines(text) {
        let (start, mut logical) = pending.take().unwrap_or((number, String::new()));
        logical.push_str(line);
        // `\` then newline continues; `\\` then newline does not (httpd's rule).
        if logical.ends_with('\\') && !logical.ends_with("\\\\") {
            logical.pop();
            pending = Some((start, logical));
        } else {
            builder.line(start, &logical);
        }
    }
    if let Some((start, logical)) = pending {
        builder.line(start, &logical);
    }
    builder.finish()
}

#[derive(Default)]
struct Builder {
    parsed: Parsed<ApacheDirective>,
    /// Sections opened and not yet closed, outermost first.
    open: Vec<ApacheDirective>,
}

impl Builder {
    fn line(&mut self, number: usize, line: &str) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            return;
        }
        if let Some(rest) = line.strip_prefix("</") {
            self.close(number, rest);
        } else if let Some(rest) = line.strip_prefix('<') {
            self.open(number, rest);
        } else {
            let mut args = words(line).into_iter();
            if let Some(name) = args.next() {
                self.push(ApacheDirective {
                    name,
                    args: args.collect(),
                    line: number,
                    children: Vec::new(),
                });
            }
        }
    }

    /// `<Name args>`, the `<` already removed.
    fn open(&mut self, number: usize, tag: &str) {
        let name_end = tag
            .find(|c: char| c.is_ascii_whitespace() || c == '>')
            .unwrap_or(tag.len());
        let (name, rest) = tag.split_at(name_end);
        if name.is_empty() {
            self.parsed.skip(number, "section tag has no name");
            return;
        }
        // Like httpd, the arguments end at the last '>'.
        let Some(args) = rest.rfind('>').and_then(|end| rest.get(..end)) else {
            self.parsed.skip(
                number,
                format!("section <{}> is missing its closing '>'", truncate(name)),
            );
            return;
        };
        if self.open.len() >= MAX_DEPTH {
            self.parsed.skip(
                number,
                format!("sections nested deeper than {MAX_DEPTH} levels"),
            );
            return;
        }
        self.open.push(ApacheDirective {
            name: name.to_string(),
            args: words(args),
            line: number,
            children: Vec::new(),
        });
    }

    /// `</Name>`, the `</` already removed.
    fn close(&mut self, number: usize, tag: &str) {
        let name = tag
            .split(|c: char| c.is_ascii_whitespace() || c == '>')
            .next()
            .unwrap_or_default();
        if name.is_empty() {
            self.parsed.skip(number, "closing tag has no name");
            return;
        }
        let Some(depth) = self
            .open
            .iter()
            .rposition(|section| section.name.eq_ignore_ascii_case(name))
        else {
            let reason = match self.open.last() {
                Some(section) => format!(
                    "closing tag </{}> does not match section <{}> opened on line {}",
                    truncate(name),
                    truncate(&section.name),
                    section.line
                ),
                None => format!("closing tag </{}> without an open section", truncate(name)),
            };
            self.parsed.skip(number, reason);
            return;
        };
        // Sections opened inside the one being closed were never closed themselves.
        for section in self.open.get(depth + 1..).unwrap_or_default() {
            self.parsed.skip(
                section.line,
                format!(
                    "section <{}> is never closed (</{}> on line {number} closes its parent)",
                    truncate(&section.name),
                    truncate(name)
                ),
            );
        }
        while self.open.len() > depth {
            self.close_innermost();
        }
    }

    fn close_innermost(&mut self) {
        if let Some(section) = self.open.pop() {
            self.push(section);
        }
    }

    fn push(&mut self, directive: ApacheDirective) {
        match self.open.last_mut() {
            Some(parent) => parent.children.push(directive),
            None => self.parsed.items.push(directive),
        }
    }

    fn finish(mut self) -> Parsed<ApacheDirective> {
        for section in &self.open {
            self.parsed.skip(
                section.line,
                format!("section <{}> is never closed", truncate(&section.name)),
            );
        }
        while !self.open.is_empty() {
            self.close_innermost();
        }
        self.parsed
    }
}

/// Splits arguments the way httpd's `ap_getword_conf` does: whitespace-separated
/// words, or `"..."`/`'...'` strings; `\\` stands for a backslash, and inside
/// quotes `\"` (or `\'`) for the quote.
fn words(mut rest: &str) -> Vec<String> {
    let mut words = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            return words;
        };
        if first == '"' || first == '\'' {
            let body = rest.get(1..).unwrap_or_default();
            let bytes = body.as_bytes();
            let quote = first as u8;
            let mut end = 0;
            while let Some(&b) = bytes.get(end) {
                if b == quote {
                    break;
                }
                let escapes = b == b'\\'
                    && matches!(bytes.get(end + 1), Some(&n) if n == quote || n == b'\\');
                end += if escapes { 2 } else { 1 };
            }
            // An unterminated quote runs to the end of the line, as in httpd.
            words.push(unescape(body.get(..end).unwrap_or(body), Some(first)));
            rest = body.get(end + 1..).unwrap_or_default();
        } else {
            let end = rest
                .find(|c: char| c.is_ascii_whitespace())
                .unwrap_or(rest.len());
            let (word, after) = rest.split_at(end);
            words.push(unescape(word, None));
            rest = after;
        }
    }
}

/// httpd's `substring_conf`: a backslash before a backslash (or before the quote
/// of a quoted word) is dropped; any other backslash stays.
fn unescape(word: &str, quote: Option<char>) -> String {
    let mut out = String::with_capacity(word.len());
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&next) = chars.peek()
            && (next == '\\' || Some(next) == quote)
        {
            out.push(next);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

fn truncate(text: &str) -> &str {
    match text.char_indices().nth(80) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::test_support::xorshift;

    const HTTPD_CONF: &str = r#"# httpd.conf
ServerRoot "/usr/local/apache2"
Listen 80
LoadModule ssl_module modules/mod_ssl.so

<IfModule unixd_module>
    User daemon
    Group daemon
</IfModule>

  # An indented comment
<Directory />
    AllowOverride none
    Require all denied
</Directory>

DocumentRoot "/usr/local/apache2/htdocs"
<Directory "/usr/local/apache2/htdocs">
    Options Indexes \
            FollowSymLinks
    <IfModule mod_rewrite.c>
        RewriteEngine On
        RewriteRule "^/old path/(.*)$" "/new path/$1" [R=301,L]
    </ifmodule>
</DIRECTORY>

LogFormat "%h %l %u %t \"%r\" %>s %b" common
<VirtualHost *:80 [::]:80>
    ServerName www.example.com
    <If "%{HTTP_HOST} == 'example.com'">
        Redirect permanent "/" "https://www.example.com/"
    </If>
</VirtualHost>
Include conf/extra/httpd-ssl.conf
"#;

    fn names(directives: &[ApacheDirective]) -> Vec<&str> {
        directives.iter().map(|d| d.name.as_str()).collect()
    }

    #[test]
    fn parses_sections_continuations_and_quotes() {
        let parsed = parse(HTTPD_CONF);
        assert_eq!(parsed.skipped, vec![]);
        let top = &parsed.items;
        assert_eq!(
            names(top),
            [
                "ServerRoot",
                "Listen",
                "LoadModule",
                "IfModule",
                "Directory",
                "DocumentRoot",
                "Directory",
                "LogFormat",
                "VirtualHost",
                "Include"
            ]
        );
        assert_eq!(top[0].args, ["/usr/local/apache2"]);
        assert_eq!(
            (top[3].args.as_slice(), top[3].line),
            (&["unixd_module".to_string()][..], 6)
        );
        assert_eq!(names(&top[3].children), ["User", "Group"]);
        assert_eq!(top[4].args, ["/"]);

        let htdocs = &top[6];
        assert_eq!(htdocs.args, ["/usr/local/apache2/htdocs"]);
        assert_eq!(names(&htdocs.children), ["Options", "IfModule"]);
        assert_eq!(htdocs.children[0].args, ["Indexes", "FollowSymLinks"]);
        assert_eq!(htdocs.children[0].line, 19);
        let rewrite = &htdocs.children[1].children[1];
        assert_eq!(
            rewrite.args,
            ["^/old path/(.*)$", "/new path/$1", "[R=301,L]"]
        );

        assert_eq!(top[7].args, ["%h %l %u %t \"%r\" %>s %b", "common"]);
        let vhost = &top[8];
        assert_eq!(vhost.args, ["*:80", "[::]:80"]);
        assert_eq!(vhost.children[1].name, "If");
        assert_eq!(vhost.children[1].args, ["%{HTTP_HOST} == 'example.com'"]);
        assert_eq!(
            vhost.children[1].children[0].args,
            ["permanent", "/", "https://www.example.com/"]
        );
        assert!(top[9].children.is_empty());
    }

    #[test]
    fn crlf_continued_comments_and_odd_quoting() {
        let text = "# a comment that continues \\\r\nSwallowed by the comment\r\n\
Header set X \"a b\"c 'd \\' e' \"unterminated rest\r\n\
Escaped \\\\\r\nNext C:\\\\x\\y line\r\n\
Last \\";
        let parsed = parse(text);
        assert_eq!(parsed.skipped, vec![]);
        let got: Vec<(&str, Vec<&str>, usize)> = parsed
            .items
            .iter()
            .map(|d| {
                (
                    d.name.as_str(),
                    d.args.iter().map(String::as_str).collect(),
                    d.line,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Header",
                    vec!["set", "X", "a b", "c", "d ' e", "unterminated rest"],
                    3
                ),
                ("Escaped", vec!["\\"], 4),
                ("Next", vec!["C:\\x\\y", "line"], 5),
                ("Last", vec![], 6),
            ]
        );
    }

    #[test]
    fn mismatched_and_unclosed_sections_are_skipped_keeping_what_parsed() {
        let text = "\
</Stray>
<VirtualHost *:443>
    ServerName a
    <Directory /srv>
        Require all granted
</VirtualHost>
<Location /x>
    SetHandler none
</Directory>
<NoBracket foo
<>
</>
<Files *.php>
    Deny from all
";
        let parsed = parse(text);
        let lines: Vec<_> = parsed.skipped.iter().map(|s| s.line).collect();
        assert_eq!(lines, [1, 4, 9, 10, 11, 12, 7, 13], "{:?}", parsed.skipped);
        assert!(parsed.skipped[0].reason.contains("without an open section"));
        assert!(
            parsed.skipped[1]
                .reason
                .contains("<Directory> is never closed")
        );
        assert!(
            parsed.skipped[2]
                .reason
                .contains("does not match section <Location> opened on line 7")
        );
        assert!(parsed.skipped[3].reason.contains("missing its closing '>'"));

        let top = &parsed.items;
        assert_eq!(names(top), ["VirtualHost", "Location"]);
        assert_eq!(names(&top[0].children), ["ServerName", "Directory"]);
        assert_eq!(names(&top[0].children[1].children), ["Require"]);
        // Unclosed at the end of the file: kept, ending with their parent.
        assert_eq!(names(&top[1].children), ["SetHandler", "Files"]);
        assert_eq!(names(&top[1].children[1].children), ["Deny"]);
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let text = "<a>\n".repeat(10_000);
        let parsed = parse(&text);
        assert_eq!(parsed.items.len(), 1);
        assert_eq!(parsed.skipped.len(), 10_000);
        assert!(parsed.skipped[0].reason.contains("nested deeper"));
    }

    #[test]
    fn garbage_does_not_panic() {
        let fragments: &[&str] = &[
            "<", ">", "</", "a", "A", " ", "\n", "\r\n", "\\", "\"", "'", "#", "é", "\t",
        ];
        let mut state = 0xbb67_ae85_84ca_a73b_u64;
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..(xorshift(&mut state) % 40) {
                text.push_str(fragments[xorshift(&mut state) as usize % fragments.len()]);
            }
            let parsed = parse(&text);
            let lines = text.lines().count().max(1);
            assert!(
                parsed
                    .skipped
                    .iter()
                    .all(|s| s.line >= 1 && s.line <= lines)
            );
        }
    }
}

//! nginx configuration files: directives with arguments, ended by `;` or followed
//! by a `{ ... }` block, tokenized the way nginx's own `ngx_conf_read_token` does.
use super::Skipped;

/// One directive, e.g. `listen 443 ssl;` or `server { ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Directive {
    pub name: String,
    /// Arguments with quotes removed and escapes (`\"`, `\\`, `\n`, ...) decoded;
    /// `$var` and `${var}` stay literal.
    pub args: Vec<String>,
    /// 1-based line of the directive's name.
    pub line: usize,
    /// `Some` for block directives (`http`, `server`, `location`, `map`, ...), even
    /// when the block is empty. A `*_by_lua_block` holds Lua, not directives: its
    /// code becomes the last argument and its block is empty.
    pub block: Option<Vec<Directive>>,
}

/// Blocks nested deeper than this are refused: real configurations stay within a
/// handful of levels, and the limit bounds recursion over the tree.
const MAX_DEPTH: usize = 128;

/// Parses a whole configuration file. Errs, with the line, on what nginx itself
/// would refuse to load: an unbalanced `}`, a block never closed, an unterminated
/// quote, a directive missing its `;`, a `;` or `{` without a directive.
pub fn parse(text: &str) -> Result<Vec<Directive>, Skipped> {
    let mut lexer = Lexer {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let mut top: Vec<Directive> = Vec::new();
    let mut open: Vec<Directive> = Vec::new();
    let mut words: Vec<String> = Vec::new();
    let mut words_line = 0;
    while let Some((line, token)) = lexer.next_token()? {
        match token {
            Token::Word(word) => {
                if words.is_empty() {
                    words_line = line;
                }
                words.push(word);
            }
            Token::Semicolon => {
                let directive = directive(&mut words, words_line)
                    .ok_or_else(|| skipped(line, "unexpected ';' without a directive"))?;
                innermost(&mut open, &mut top).push(directive);
            }
            Token::Open => {
                let mut directive = directive(&mut words, words_line)
                    .ok_or_else(|| skipped(line, "unexpected '{' without a directive"))?;
                directive.block = Some(Vec::new());
                if directive.name.ends_with("_by_lua_block") {
                    directive.args.push(lexer.lua_block(directive.line)?);
                    innermost(&mut open, &mut top).push(directive);
                } else if open.len() >= MAX_DEPTH {
                    return Err(skipped(
                        line,
                        format!("blocks nested deeper than {MAX_DEPTH} levels"),
                    ));
                } else {
                    open.push(directive);
                }
            }
            Token::Close => {
                if let Some(name) = words.first() {
                    return Err(skipped(
                        line,
                        format!(
                            "unexpected '}}': directive {:?} on line {words_line} is missing its ';'",
                            truncate(name)
                        ),
                    ));
                }
                let closed = open
                    .pop()
                    .ok_or_else(|| skipped(line, "unexpected '}' without an open block"))?;
                innermost(&mut open, &mut top).push(closed);
            }
        }
    }
    if let Some(name) = words.first() {
        return Err(skipped(
            words_line,
            format!(
                "unexpected end of file: directive {:?} is missing its ';'",
                truncate(name)
            ),
        ));
    }
    if let Some(unclosed) = open.last() {
        return Err(skipped(
            unclosed.line,
            format!(
                "unexpected end of file: block {:?} opened on this line is never closed",
                truncate(&unclosed.name)
            ),
        ));
    }
    Ok(top)
}

/// Calls `f` on every directive in document order, parents before their blocks,
/// with the chain of enclosing block directives (outermost first): a `server`
/// inside `http` is visited with ancestors `[http]`.
pub fn walk<'a>(directives: &'a [Directive], f: &mut impl FnMut(&[&'a Directive], &'a Directive)) {
    fn visit<'a>(
        directives: &'a [Directive],
        ancestors: &mut Vec<&'a Directive>,
        f: &mut impl FnMut(&[&'a Directive], &'a Directive),
    ) {
        for directive in directives {
            f(ancestors, directive);
            if let Some(block) = &directive.block {
                ancestors.push(directive);
                visit(block, ancestors, f);
                ancestors.pop();
            }
        }
    }
    visit(directives, &mut Vec::new(), f);
}

fn skipped(line: usize, reason: impl Into<String>) -> Skipped {
    Skipped {
        line,
        reason: reason.into(),
    }
}

/// The directive the collected words make (name first), emptying them.
fn directive(words: &mut Vec<String>, line: usize) -> Option<Directive> {
    let mut args = std::mem::take(words).into_iter();
    let name = args.next()?;
    Some(Directive {
        name,
        args: args.collect(),
        line,
        block: None,
    })
}

/// Where a finished directive goes: the innermost open block, or the top level.
fn innermost<'v>(open: &'v mut [Directive], top: &'v mut Vec<Directive>) -> &'v mut Vec<Directive> {
    match open.last_mut().and_then(|parent| parent.block.as_mut()) {
        Some(block) => block,
        None => top,
    }
}

enum Token {
    Word(String),
    Semicolon,
    Open,
    Close,
}

struct Lexer<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        if byte == b'\n' {
            self.line += 1;
        }
        Some(byte)
    }

    fn skip_to_end_of_line(&mut self) {
        while self.peek().is_some_and(|b| b != b'\n') {
            self.pos += 1;
        }
    }

    fn slice(&self, start: usize, end: usize) -> &[u8] {
        self.bytes.get(start..end).unwrap_or_default()
    }

    /// The next token and the line it starts on; `None` at the end of the input.
    fn next_token(&mut self) -> Result<Option<(usize, Token)>, Skipped> {
        loop {
            let line = self.line;
            let Some(byte) = self.peek() else {
                return Ok(None);
            };
            let token = match byte {
                b' ' | b'\t' | b'\r' | b'\n' => {
                    self.bump();
                    continue;
                }
                // A comment only where a token could start: inside a word `#` is literal.
                b'#' => {
                    self.skip_to_end_of_line();
                    continue;
                }
                b';' | b'{' | b'}' => {
                    self.bump();
                    match byte {
                        b';' => Token::Semicolon,
                        b'{' => Token::Open,
                        _ => Token::Close,
                    }
                }
                b'"' | b'\'' => {
                    self.bump();
                    Token::Word(self.quoted(byte, line)?)
                }
                _ => Token::Word(self.word()),
            };
            return Ok(Some((line, token)));
        }
    }

    /// A quoted string, the opening quote already consumed.
    fn quoted(&mut self, quote: u8, line: usize) -> Result<String, Skipped> {
        let start = self.pos;
        loop {
            match self.bump() {
                None => return Err(skipped(line, "unterminated quoted string")),
                Some(b'\\') => {
                    self.bump();
                }
                Some(byte) if byte == quote => break,
                Some(_) => {}
            }
        }
        let raw = self.slice(start, self.pos - 1);
        // nginx wants a separator after the closing quote (`)` for `if (... "x")`).
        match self.peek() {
            None | Some(b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' | b')') => Ok(unescape(raw)),
            Some(other) => Err(skipped(
                self.line,
                format!("unexpected {} after a quoted string", describe(other)),
            )),
        }
    }

    /// An unquoted word: up to whitespace, `;` or `{` (but `${` stays in the word).
    fn word(&mut self) -> String {
        let start = self.pos;
        let mut after_dollar = false;
        while let Some(byte) = self.peek() {
            match byte {
                b'\\' => {
                    self.bump();
                    self.bump();
                    after_dollar = false;
                    continue;
                }
                b'{' if after_dollar => {}
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'{' => break,
                _ => {}
            }
            after_dollar = byte == b'$';
            self.bump();
        }
        unescape(self.slice(start, self.pos))
    }

    /// The Lua code of a `*_by_lua_block`, its `{` already consumed, up to the
    /// matching `}`: braces inside Lua strings and comments do not count.
    fn lua_block(&mut self, open_line: usize) -> Result<String, Skipped> {
        let start = self.pos;
        let mut depth = 1usize;
        loop {
            let Some(byte) = self.bump() else {
                return Err(skipped(
                    open_line,
                    "lua block opened on this line is never closed",
                ));
            };
            match byte {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                b'"' | b'\'' => loop {
                    match self.bump() {
                        None => {
                            return Err(skipped(
                                open_line,
                                "lua block opened on this line has an unterminated string",
                            ));
                        }
                        Some(b'\\') => {
                            self.bump();
                        }
                        Some(quote) if quote == byte => break,
                        Some(_) => {}
                    }
                },
                b'[' => {
                    if let Some(level) = self.long_bracket_rest() {
                        self.skip_long_bracket(level, open_line)?;
                    }
                }
                b'-' if self.peek() == Some(b'-') => {
                    self.bump();
                    if self.peek() == Some(b'[') {
                        self.bump();
                        if let Some(level) = self.long_bracket_rest() {
                            self.skip_long_bracket(level, open_line)?;
                            continue;
                        }
                    }
                    self.skip_to_end_of_line();
                }
                _ => {}
            }
        }
        let code = self.slice(start, self.pos - 1);
        Ok(String::from_utf8_lossy(code).trim().to_string())
    }

    /// After a `[`: consumes `=...=[` of a Lua long bracket and returns its level,
    /// or consumes nothing.
    fn long_bracket_rest(&mut self) -> Option<usize> {
        let rest = self.bytes.get(self.pos..)?;
        let level = rest.iter().take_while(|&&b| b == b'=').count();
        if rest.get(level) != Some(&b'[') {
            return None;
        }
        self.pos += level + 1;
        Some(level)
    }

    fn skip_long_bracket(&mut self, level: usize, open_line: usize) -> Result<(), Skipped> {
        loop {
            match self.bump() {
                None => {
                    return Err(skipped(
                        open_line,
                        "lua block opened on this line has an unterminated long string",
                    ));
                }
                Some(b']') => {
                    let rest = self.bytes.get(self.pos..).unwrap_or_default();
                    let equals = rest.iter().take_while(|&&b| b == b'=').count();
                    if equals == level && rest.get(level) == Some(&b']') {
                        self.pos += level + 1;
                        return Ok(());
                    }
                }
                Some(_) => {}
            }
        }
    }
}

/// Decodes the escapes nginx decodes (`\"`, `\'`, `\\`, `\t`, `\r`, `\n`); any
/// other backslash stays.
fn unescape(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&byte) = raw.get(i) {
        if byte == b'\\' {
            let decoded = match raw.get(i + 1) {
                Some(&c @ (b'"' | b'\'' | b'\\')) => Some(c),
                Some(b't') => Some(b'\t'),
                Some(b'r') => Some(b'\r'),
                Some(b'n') => Some(b'\n'),
                _ => None,
            };
            if let Some(decoded) = decoded {
                out.push(decoded);
                i += 2;
                continue;
            }
        }
        out.push(byte);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn describe(byte: u8) -> String {
    if byte.is_ascii_graphic() {
        format!("'{}'", char::from(byte))
    } else {
        format!("byte 0x{byte:02x}")
    }
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

    const NGINX_CONF: &str = r#"# /etc/nginx/nginx.conf
user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /var/run/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  json  escape=json '{"time":"$time_iso8601","uri":"$request_uri","ua":"${http_user_agent}"}';
    access_log  /var/log/nginx/access.log  json;

    map $http_upgrade $connection_upgrade {
        default upgrade;
        ''      close;
        "~*^\"x\"$" quoted;
    }

    server {
        listen       80;
        listen  [::]:80;
        server_name  example.com www.example.com;
        return 301 https://$host$request_uri;
    }

    server {
        listen 443 ssl http2; # trailing comment
        server_name example.com;
        ssl_certificate     /etc/ssl/example.crt;
        ssl_protocols       TLSv1 TLSv1.1 TLSv1.2;

        location / {
            root   /usr/share/nginx/html;
            index  index.html index.htm;
        }

        location ~ \.php$ {
            fastcgi_pass   127.0.0.1:9000;
            fastcgi_param  SCRIPT_FILENAME  $document_root$fastcgi_script_name;
        }

        location = /lua {
            set_by_lua $res 'return "{" .. ngx.var.arg_a .. "}"';
            content_by_lua_block {
                local t = { a = "}", b = '{' }  -- a } in a comment
                --[[ a long
                     comment with } ]]
                ngx.say([==[ {{ ]] ]==], t.a)
            }
        }

        if ($request_method = "POST") {
            return 405;
        }
    }

    include /etc/nginx/conf.d/*.conf;
}
"#;

    fn names(directives: &[Directive]) -> Vec<&str> {
        directives.iter().map(|d| d.name.as_str()).collect()
    }

    fn args(directive: &Directive) -> Vec<&str> {
        directive.args.iter().map(String::as_str).collect()
    }

    #[test]
    fn parses_a_realistic_configuration() {
        let top = parse(NGINX_CONF).unwrap();
        assert_eq!(
            names(&top),
            [
                "user",
                "worker_processes",
                "error_log",
                "pid",
                "events",
                "http"
            ]
        );
        assert_eq!((top[0].line, args(&top[0])), (2, vec!["nginx"]));
        assert_eq!(top[4].block.as_ref().unwrap()[0].args, ["1024"]);

        let http = top[5].block.as_ref().unwrap();
        assert_eq!(
            names(http),
            [
                "include",
                "default_type",
                "log_format",
                "access_log",
                "map",
                "server",
                "server",
                "include"
            ]
        );
        assert_eq!(
            args(&http[2]),
            [
                "json",
                "escape=json",
                r#"{"time":"$time_iso8601","uri":"$request_uri","ua":"${http_user_agent}"}"#
            ]
        );
        let map = &http[4];
        assert_eq!(args(map), ["$http_upgrade", "$connection_upgrade"]);
        let entries: Vec<(&str, Vec<&str>)> = map
            .block
            .as_ref()
            .unwrap()
            .iter()
            .map(|d| (d.name.as_str(), args(d)))
            .collect();
        assert_eq!(
            entries,
            [
                ("default", vec!["upgrade"]),
                ("", vec!["close"]),
                ("~*^\"x\"$", vec!["quoted"]),
            ]
        );

        let tls = http[6].block.as_ref().unwrap();
        assert_eq!(http[6].line, 32);
        assert_eq!(args(&tls[0]), ["443", "ssl", "http2"]);
        let php = &tls[5];
        assert_eq!(
            (php.name.as_str(), args(php)),
            ("location", vec!["~", "\\.php$"])
        );
        assert_eq!(
            args(&php.block.as_ref().unwrap()[1]),
            ["SCRIPT_FILENAME", "$document_root$fastcgi_script_name"]
        );

        let lua = tls[6].block.as_ref().unwrap();
        assert_eq!(
            args(&lua[0]),
            ["$res", r#"return "{" .. ngx.var.arg_a .. "}""#]
        );
        assert_eq!(lua[1].name, "content_by_lua_block");
        assert_eq!(lua[1].block, Some(vec![]));
        assert!(lua[1].args[0].starts_with("local t = {"));
        assert!(lua[1].args[0].ends_with("t.a)"));

        let if_ = &tls[7];
        assert_eq!(args(if_), ["($request_method", "=", "POST", ")"]);
        assert_eq!(http[7].args, ["/etc/nginx/conf.d/*.conf"]);
    }

    #[test]
    fn walk_gives_ancestry() {
        let top = parse(NGINX_CONF).unwrap();
        let mut servers = Vec::new();
        let mut deepest = 0;
        walk(&top, &mut |ancestors, directive| {
            deepest = deepest.max(ancestors.len());
            if directive.name == "server" {
                let chain: Vec<&str> = ancestors.iter().map(|d| d.name.as_str()).collect();
                servers.push((chain, directive.line));
            }
        });
        assert_eq!(servers, [(vec!["http"], 25), (vec!["http"], 32)]);
        assert_eq!(deepest, 3);
    }

    #[test]
    fn odd_but_valid_syntax() {
        let text = "server{listen 80;}\r\nlocation /a}b {return 200 'it\\'s';}\nempty { }\n\
a\\;b c\\ d \"e\\tf\" g#notcomment;\nset $x ${y}z;\nlast \"q\"";
        // The last directive lacks its ';'.
        assert_eq!(parse(text).unwrap_err().line, 6);
        let top = parse(&format!("{text};")).unwrap();
        assert_eq!(
            names(&top),
            ["server", "location", "empty", "a\\;b", "set", "last"]
        );
        assert_eq!(top[0].block.as_ref().unwrap()[0].args, ["80"]);
        assert_eq!(top[1].args, ["/a}b"]);
        assert_eq!(top[1].block.as_ref().unwrap()[0].args, ["200", "it's"]);
        // Two quoted strings must be separated.
        assert!(parse("return 200 'it''s';").is_err());
        assert_eq!(top[2].block, Some(vec![]));
        assert_eq!(args(&top[3]), ["c\\ d", "e\tf", "g#notcomment"]);
        assert_eq!(args(&top[4]), ["$x", "${y}z"]);
        assert_eq!(top[5].line, 6);
        assert_eq!(parse("").unwrap(), vec![]);
        assert_eq!(parse("# only a comment\n\n").unwrap(), vec![]);
    }

    #[test]
    fn malformed_configurations_name_the_line() {
        let err = |text: &str| parse(text).unwrap_err();
        let unbalanced = err("events {\n}\n}\n");
        assert_eq!(unbalanced.line, 3);
        assert!(unbalanced.reason.contains("without an open block"));
        let unclosed = err("http {\n  server {\n    listen 80;\n  }\n");
        assert_eq!(unclosed.line, 1);
        assert!(unclosed.reason.contains("\"http\""), "{unclosed:?}");
        let quote = err("http {\n  return 200 \"abc;\n}\n");
        assert_eq!(
            (quote.line, quote.reason.as_str()),
            (2, "unterminated quoted string")
        );
        assert_eq!(err("a 'b").line, 1);
        let missing_semicolon = err("server {\n  listen 80\n}\n");
        assert_eq!(missing_semicolon.line, 3);
        assert!(missing_semicolon.reason.contains("\"listen\" on line 2"));
        assert_eq!(err("a;\n;\n").line, 2);
        assert_eq!(err("{ a; }").line, 1);
        assert!(
            err("a \"b\"c;")
                .reason
                .contains("'c' after a quoted string")
        );
        assert!(
            err("content_by_lua_block {\n ngx.say('}')\n")
                .reason
                .contains("never closed")
        );
        assert!(
            err("content_by_lua_block { x = 'y }")
                .reason
                .contains("unterminated string")
        );
        assert!(
            err("content_by_lua_block { x = [[ } }")
                .reason
                .contains("long string")
        );
        let deep = "a{".repeat(10_000);
        assert!(err(&deep).reason.contains("nested deeper"));
        let fine = format!("{}{}", "a{".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert!(parse(&fine).is_ok());
    }

    #[test]
    fn garbage_does_not_panic() {
        let fragments: &[&str] = &[
            "a",
            " ",
            "\n",
            "\r\n",
            ";",
            "{",
            "}",
            "\"",
            "'",
            "\\",
            "$",
            "${",
            "#",
            "[[",
            "]]",
            "[=[",
            "]=]",
            "--",
            "x_by_lua_block",
            ")",
            "é",
            "\u{fffd}",
        ];
        let mut state = 0x6a09_e667_f3bc_c908_u64;
        for _ in 0..5000 {
            let mut text = String::new();
            for _ in 0..(xorshift(&mut state) % 40) {
                text.push_str(fragments[xorshift(&mut state) as usize % fragments.len()]);
            }
            if let Err(skipped) = parse(&text) {
                let lines = text.split('\n').count();
                assert!(
                    skipped.line >= 1 && skipped.line <= lines,
                    "{text:?} {skipped:?}"
                );
            }
        }
    }
}

//! nginx configuration files, parsed and then walked as the web collectors walk them.
#![no_main]
use census_agent::parse::nginx_conf;
use census_fuzz::{assert_skipped_within, lines, text};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = text(data);
    let lines = lines(&text);
    match nginx_conf::parse(&text) {
        Ok(directives) => {
            let mut visited = 0usize;
            nginx_conf::walk(&directives, &mut |ancestors, directive| {
                assert!(directive.line >= 1 && directive.line <= lines);
                visited += ancestors.len() + directive.args.len();
            });
            std::hint::black_box(visited);
        }
        Err(skipped) => assert_skipped_within(lines, &[skipped]),
    }
});

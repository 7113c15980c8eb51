//! nginx configuration files, parsed and then walked as the web collectors walk them.
#![no_main]
use census_agent::parse::nginx_conf;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(directives) = nginx_conf::parse(&census_fuzz::text(data)) {
        let mut visited = 0usize;
        nginx_conf::walk(&directives, &mut |ancestors, directive| {
            visited += ancestors.len() + directive.args.len();
        });
        std::hint::black_box(visited);
    }
});

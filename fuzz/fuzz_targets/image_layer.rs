//! Single layer blobs (tar or gzip-compressed tar) as containerd's content store holds
//! them. The cataloger opens layers by path, so each input goes through a scratch file.
#![no_main]
use std::fs::File;
use std::io::{Seek, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::LazyLock;

use census_agent::image_contents;
use libfuzzer_sys::fuzz_target;

/// The scratch file, unlinked as soon as it is open so that nothing is left behind
/// when the fuzzer exits, and the path the cataloger reopens it by.
static LAYER: LazyLock<(File, PathBuf)> = LazyLock::new(|| {
    let path = std::env::temp_dir().join(format!("census-fuzz-layer-{}", std::process::id()));
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .expect("cannot create the scratch layer file");
    std::fs::remove_file(&path).expect("cannot unlink the scratch layer file");
    let reopen = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    (file, reopen)
});

fuzz_target!(|data: &[u8]| {
    let (mut file, path) = (&LAYER.0, &LAYER.1);
    file.set_len(0)
        .expect("cannot truncate the scratch layer file");
    file.rewind().expect("cannot rewind the scratch layer file");
    file.write_all(data)
        .expect("cannot write the scratch layer file");
    let layers = [("sha256:fuzz".to_string(), path.clone())];
    let _ = image_contents::catalog_layer_files(&layers, "sha256:fuzz");
});

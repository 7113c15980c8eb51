//! Single layer blobs (tar or gzip-compressed tar) as containerd's content store holds
//! them. The cataloger opens layers by path, so each input is written to a scratch file.
#![no_main]
use std::path::PathBuf;
use std::sync::LazyLock;

use census_agent::image_contents;
use libfuzzer_sys::fuzz_target;

static LAYER: LazyLock<PathBuf> = LazyLock::new(|| {
    std::env::temp_dir().join(format!("census-fuzz-layer-{}", std::process::id()))
});

fuzz_target!(|data: &[u8]| {
    std::fs::write(&*LAYER, data).expect("cannot write the scratch layer file");
    let layers = [("sha256:fuzz".to_string(), LAYER.clone())];
    let _ = image_contents::catalog_layer_files(&layers, "sha256:fuzz");
});

//! Image exports (`docker save`): a tar of layer tars and a manifest, cataloged in one
//! streaming pass.
#![no_main]
use census_agent::image_contents;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = image_contents::catalog_export(data, "sha256:fuzz");
});

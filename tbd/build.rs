//! Builds the eBPF programs (tbd-ebpf) for bpfel-unknown-none with aya-build; the object is
//! embedded into tbd with `include_bytes_aligned!`.
fn main() -> anyhow::Result<()> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tbd-ebpf");
    let root = root.canonicalize()?;
    let root_dir = root.to_str().expect("utf-8 path");
    println!("cargo:rerun-if-changed=../tbd-common/src");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "tbd-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )
}

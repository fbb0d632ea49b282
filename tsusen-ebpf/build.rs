use which::which;

/// Rebuild when bpf-linker changes (a new LLVM can change the object).
fn main() {
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}

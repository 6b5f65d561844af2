//! The CPU's side of whisper.cpp: which instruction sets this build was compiled for, which
//! kernels were chosen at run time on the CPU it runs on, and the check that refuses to
//! start on a CPU that lacks what the build needs (instead of dying of an illegal
//! instruction in the middle of a job).
//!
//! A build is portable (the default: x86-64-v3, that is AVX2, FMA, F16C and BMI2;
//! vendor/whisper-rs-sys patch 0008) or native (`GGML_NATIVE=ON`: everything the build
//! machine has, compiled in). A portable build carries earshot's AVX-512 kernels compiled
//! apart, the q8_0 tiles and a copy of tinyBLAS, and uses them only where the CPU has
//! AVX-512 F, BW, VL and VNNI (vendor/whisper-rs-sys/EARSHOT.md, "AVX-512 kernels chosen at
//! run time"). The rest of ggml runs what the build was compiled for.

use std::fmt;

/// Which kernels chosen at run time may run (`--cpu-kernels`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CpuKernels {
    /// The fastest this CPU has.
    #[default]
    Auto,
    /// None that needs AVX-512: what a CPU with AVX2 only (AMD Zen 3, older Xeons) runs.
    /// For measuring that on a machine that has AVX-512; needs the portable build (the
    /// default), not one built with `GGML_NATIVE=ON`.
    Avx2,
}

/// The instruction sets in use: those the build was compiled for, and those chosen at run
/// time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuFeatures {
    /// ggml's names (`AVX2`, `F16C`, `AVX512_VNNI`, ...) of what the build was compiled for,
    /// plus its CPU backend's options (`LLAMAFILE`, `REPACK`).
    pub built: Vec<String>,
    /// What was chosen at run time on this CPU, beyond `built`: in a portable build on a
    /// CPU with AVX-512 VNNI, `AVX512` (tinyBLAS's AVX-512 copy) and `AVX512_VNNI` (the q8_0
    /// tiles).
    pub chosen: Vec<String>,
}

impl CpuFeatures {
    /// Every name in use, those of the build first.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.built.iter().chain(&self.chosen).map(String::as_str)
    }
}

impl fmt::Display for CpuFeatures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.built.join(","))?;
        if !self.chosen.is_empty() {
            write!(f, " +{} (chosen at run time)", self.chosen.join(","))?;
        }
        Ok(())
    }
}

#[cfg(target_arch = "x86_64")]
mod ffi {
    use std::os::raw::c_int;
    // Defined in vendor/whisper-rs-sys's repack.cpp (EARSHOT.md, "AVX-512 kernels chosen at
    // run time").
    unsafe extern "C" {
        pub fn earshot_ggml_run_time_kernels() -> c_int;
        pub fn earshot_ggml_avx512_allow(allow: c_int);
    }
}

/// The kernels chosen at run time on this CPU, beyond what the build was compiled for: 1 the
/// q8_0 tiles (AVX-512 VNNI), 2 tinyBLAS's AVX-512 copy.
fn run_time_kernels() -> i32 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: reads an atomic flag and the CPU's features; no arguments.
        unsafe { ffi::earshot_ggml_run_time_kernels() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    0
}

/// The instruction sets in use now. Printed at start-up and exposed in `/metrics`.
pub fn cpu_features() -> CpuFeatures {
    let built = built_features();
    let kernels = run_time_kernels();
    let mut chosen = Vec::new();
    for (bit, name) in [(2, "AVX512"), (1, "AVX512_VNNI")] {
        if kernels & bit != 0 && !built.iter().any(|f| f == name) {
            chosen.push(name.to_string());
        }
    }
    CpuFeatures { built, chosen }
}

/// What the build was compiled for, as ggml reports it.
fn built_features() -> Vec<String> {
    let info = whisper_rs::print_system_info();
    let cpu = info.split("CPU :").nth(1).unwrap_or("");
    cpu.split('|')
        .filter_map(|f| {
            let (name, on) = f.split_once('=')?;
            (on.trim() == "1").then(|| name.trim().to_string())
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// Why this build cannot run its kernels as asked on this CPU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CpuError {
    #[error(
        "this earshot was compiled for {missing} (built with GGML_NATIVE=ON on another \
         machine?), which this CPU does not have; it would stop with an illegal instruction. \
         Build it without GGML_NATIVE=ON: the default build is portable, and still uses the \
         AVX-512 kernels where the CPU has them",
        missing = .0.join(", ")
    )]
    Missing(Vec<String>),
    #[error(
        "--cpu-kernels avx2 cannot mask AVX-512 off: this earshot was compiled for it ({0}: \
         built with GGML_NATIVE=ON on an AVX-512 machine). Use the default, portable build to \
         measure what a CPU with AVX2 only gets"
    )]
    CompiledIn(String),
}

/// Before the model loads: refuse a CPU that lacks what the build was compiled for, and
/// apply `kernels` to the kernels chosen at run time.
pub fn prepare_cpu(kernels: CpuKernels) -> Result<(), CpuError> {
    let built = built_features();
    let missing = missing_on_this_cpu(&built);
    if !missing.is_empty() {
        return Err(CpuError::Missing(missing));
    }
    if kernels == CpuKernels::Avx2 {
        if let Some(f) = built.iter().find(|f| f.starts_with("AVX512")) {
            return Err(CpuError::CompiledIn(f.clone()));
        }
    }
    #[cfg(target_arch = "x86_64")]
    // SAFETY: stores an atomic flag, read when weights are loaded and at each product.
    unsafe {
        ffi::earshot_ggml_avx512_allow(i32::from(kernels == CpuKernels::Auto));
    }
    Ok(())
}

/// The names in `built` that this CPU lacks.
fn missing_on_this_cpu(built: &[String]) -> Vec<String> {
    built
        .iter()
        .filter(|f| cpu_has(f) == Some(false))
        .cloned()
        .collect()
}

/// Whether this CPU has the instruction set ggml calls `name`; `None` for a name that is
/// not an instruction set (`LLAMAFILE`, `REPACK`) or that this check does not know.
#[cfg(target_arch = "x86_64")]
fn cpu_has(name: &str) -> Option<bool> {
    use std::arch::is_x86_feature_detected as has;
    Some(match name {
        "SSE3" => has!("sse3"),
        "SSSE3" => has!("ssse3"),
        "AVX" => has!("avx"),
        "AVX2" => has!("avx2"),
        "F16C" => has!("f16c"),
        "FMA" => has!("fma"),
        "BMI2" => has!("bmi2"),
        "AVX_VNNI" => has!("avxvnni"),
        "AVX512" => has!("avx512f"),
        "AVX512_VBMI" => has!("avx512vbmi"),
        "AVX512_VNNI" => has!("avx512vnni"),
        "AVX512_BF16" => has!("avx512bf16"),
        _ => return None,
    })
}

#[cfg(not(target_arch = "x86_64"))]
fn cpu_has(_name: &str) -> Option<bool> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The features ggml reports for this build, as names: on x86-64 at least the SSE3 every
    /// build has, and only names (no "= 1", no other sections).
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_cpu_features_in_use_are_named() {
        let f = cpu_features();
        assert!(f.built.iter().any(|n| n == "SSE3"), "{f:?}");
        assert!(
            f.all().all(|n| n
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')),
            "{f:?}"
        );
        assert!(!f.all().any(|n| n == "COREML" || n == "OPENVINO"), "{f:?}");
    }

    /// The AVX-512 VNNI kernels run where the CPU has AVX-512 VNNI (and F, BW, VL), whether
    /// compiled in (a native build on such a CPU) or chosen at run time (a portable build);
    /// never elsewhere.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_avx512_kernels_follow_the_cpu() {
        use std::arch::is_x86_feature_detected as has;
        let cpu = has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("avx512vnni");
        let f = cpu_features();
        assert_eq!(f.all().any(|n| n == "AVX512_VNNI"), cpu, "{f}");
        let built_in = f.built.iter().any(|n| n == "AVX512_VNNI");
        assert_eq!(run_time_kernels() != 0, cpu && !built_in, "{f}");
    }

    /// This machine has what this build was compiled for (it was built here), and an
    /// instruction set it does not have is named.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn a_cpu_without_what_the_build_needs_is_named() {
        assert_eq!(missing_on_this_cpu(&built_features()), Vec::<String>::new());
        let names = ["LLAMAFILE", "AVX2", "NOT_A_FEATURE"].map(String::from);
        assert_eq!(missing_on_this_cpu(&names), Vec::<String>::new());
        if !std::arch::is_x86_feature_detected!("avx512vbmi") {
            let names = ["AVX2", "AVX512_VBMI"].map(String::from);
            assert_eq!(missing_on_this_cpu(&names), vec!["AVX512_VBMI".to_string()]);
        }
        let e = CpuError::Missing(vec!["AVX512".into(), "AVX512_VNNI".into()]).to_string();
        assert!(
            e.contains("AVX512, AVX512_VNNI") && e.contains("GGML_NATIVE=ON"),
            "{e}"
        );
    }

    #[test]
    fn the_display_says_what_was_chosen_at_run_time() {
        let f = CpuFeatures {
            built: vec!["AVX2".into(), "FMA".into()],
            chosen: vec!["AVX512_VNNI".into()],
        };
        assert_eq!(f.to_string(), "AVX2,FMA +AVX512_VNNI (chosen at run time)");
        assert_eq!(f.all().collect::<Vec<_>>(), ["AVX2", "FMA", "AVX512_VNNI"]);
    }
}

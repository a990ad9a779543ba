"""mnist_lessons.config and mnist_lessons.runtime: settings, seeding, versions and devices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from mnist_lessons import setup_course
from mnist_lessons.config import default_cache_dir, settings
from mnist_lessons.runtime import describe_runtime, in_colab, set_seed


def test_settings_read_the_three_variables(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_LESSONS_DATA", str(tmp_path / "m.npz"))
    monkeypatch.setenv("MNIST_LESSONS_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "CI")
    s = settings()
    assert s.data_path == tmp_path / "m.npz" and s.cache_dir == tmp_path / "c"
    assert s.profile == "ci" and s.is_ci


def test_settings_defaults(monkeypatch, tmp_path):
    for name in ("MNIST_LESSONS_DATA", "MNIST_LESSONS_CACHE", "MNIST_LESSONS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    s = settings()
    assert s.data_path is None and s.profile == "full" and not s.is_ci
    assert s.cache_dir == default_cache_dir() == Path(tmp_path) / "mnist_lessons"


def test_unknown_profile_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("MNIST_LESSONS_PROFILE", "fast")
    with pytest.raises(ValueError, match="not a profile; use one of"):
        settings()


def test_set_seed_makes_numpy_and_tensorflow_repeat():
    set_seed(42)
    a = (np.random.rand(3), tf.random.normal([3]).numpy())
    set_seed(42)
    b = (np.random.rand(3), tf.random.normal([3]).numpy())
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    set_seed(43)
    assert not np.array_equal(tf.random.normal([3]).numpy(), b[1])


@pytest.mark.parametrize("bad", [-1, 1.5, "0", True, None])
def test_set_seed_rejects_what_is_not_a_seed(bad):
    with pytest.raises(ValueError, match="non-negative integer"):
        set_seed(bad)


def test_describe_runtime_reports_versions_and_at_least_a_cpu():
    import sys
    from importlib.metadata import packages_distributions, version

    info = describe_runtime()
    # Versions as the installed packages' metadata records them (not the modules' attributes).
    assert info["python"] == "{}.{}.{}".format(*sys.version_info[:3])
    assert info["tensorflow"] in {version(d) for d in packages_distributions()["tensorflow"]}
    assert info["keras"] == version("keras") and info["numpy"] == version("numpy")
    assert info["eager"] is True and info["colab"] is False and in_colab() is False
    assert ("CPU", "/physical_device:CPU:0") in info["devices"]
    assert info["gpu"] == bool(tf.config.list_physical_devices("GPU"))


def test_setup_course_seeds_and_styles():
    import matplotlib

    assert setup_course(7) is None
    assert matplotlib.rcParams["image.cmap"] == "gray_r"
    first = tf.random.uniform([2]).numpy()
    setup_course(7)
    np.testing.assert_array_equal(first, tf.random.uniform([2]).numpy())


def test_resolve_precision_follows_the_hardware(monkeypatch):
    from mnist_lessons import runtime

    assert runtime.resolve_precision("float32") == "float32"
    assert runtime.resolve_precision("bfloat16") == "bfloat16"
    monkeypatch.setattr(runtime, "has_fast_bfloat16", lambda: True)
    assert runtime.resolve_precision("auto") == "bfloat16"
    monkeypatch.setattr(runtime, "has_fast_bfloat16", lambda: False)
    assert runtime.resolve_precision() == "float32"
    with pytest.raises(ValueError, match="unknown precision 'float16'"):
        runtime.resolve_precision("float16")


# Real "flags" lines of /proc/cpuinfo (the same words lscpu prints as "Flags:").
# An Intel Xeon with AMX (Sapphire Rapids class, virtualised): the machine these tests were
# written on, 2026-11-27. The three others are as recorded from those machines.
XEON_AMX = (
    "flags\t\t: "
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology "
    "nonstop_tsc cpuid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic "
    "movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm "
    "3dnowprefetch cpuid_fault ssbd ibrs ibpb stibp ibrs_enhanced fsgsbase tsc_adjust bmi1 "
    "avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb "
    "avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx_vnni avx512_bf16 "
    "wbnoinvd arat avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni "
    "avx512_bitalg avx512_vpopcntdq rdpid bus_lock_detect cldemote movdiri movdir64b fsrm "
    "md_clear serialize tsxldtrk ibt amx_bf16 avx512_fp16 amx_tile amx_int8 flush_l1d "
    "arch_capabilities")
# AMD EPYC 9534 (Zen 4, "Genoa"): AVX-512 BF16 but no AMX.
EPYC_9534_AVX512_BF16 = (
    "flags\t\t: "
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good "
    "amd_lbr_v2 nopl nonstop_tsc cpuid extd_apicid aperfmperf rapl pni pclmulqdq monitor "
    "ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm "
    "cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit "
    "wdt tce topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 "
    "invpcid_single hw_pstate ssbd mba perfmon_v2 ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 "
    "smep bmi2 erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap avx512ifma clflushopt "
    "clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves cqm_llc "
    "cqm_occup_llc cqm_mbm_total cqm_mbm_local avx512_bf16 clzero irperf xsaveerptr rdpru "
    "wbnoinvd amd_ppin cppc arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid "
    "decodeassists pausefilter pfthreshold avic v_vmsave_vmload vgif x2avic v_spec_ctrl "
    "avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg "
    "avx512_vpopcntdq rdpid overflow_recov succor smca fsrm flush_l1d sev sev_es")
# AMD EPYC 7502 (Zen 2, "Rome"): AVX2, no AVX-512 at all.
EPYC_7502_AVX2 = (
    "flags\t\t: "
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
    "nonstop_tsc cpuid extd_apicid aperfmperf rapl pni pclmulqdq monitor ssse3 fma cx16 "
    "sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic "
    "cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce topoext "
    "perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 hw_pstate ssbd mba "
    "ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 cqm rdt_a rdseed adx smap "
    "clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 cqm_llc cqm_occup_llc cqm_mbm_total "
    "cqm_mbm_local clzero irperf xsaveerptr rdpru wbnoinvd amd_ppin arat npt lbrv svm_lock "
    "nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold avic "
    "v_vmsave_vmload vgif v_spec_ctrl umip rdpid overflow_recov succor smca sev sev_es")
# Intel Xeon Gold 6140 (Skylake-SP): AVX-512, but none of its BF16 instructions.
XEON_6140_AVX512_NO_BF16 = (
    "flags\t\t: "
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi "
    "mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art "
    "arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni pclmulqdq "
    "dtes64 monitor ds_cpl smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid dca sse4_1 sse4_2 "
    "x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm "
    "3dnowprefetch cpuid_fault epb cat_l3 cdp_l3 invpcid_single pti intel_ppin ssbd mba ibrs "
    "ibpb stibp fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms invpcid rtm cqm mpx rdt_a "
    "avx512f avx512dq rdseed adx smap clflushopt clwb intel_pt avx512cd avx512bw avx512vl "
    "xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local dtherm "
    "ida arat pln pts hwp hwp_act_window hwp_pkg_req pku ospke md_clear flush_l1d "
    "arch_capabilities")
# The AVX2 line with two made-up words that only contain the BF16 flags' names.
LOOKALIKE_WORDS = EPYC_7502_AVX2 + " avx512_bf16x noamx_bf16"


@pytest.mark.parametrize("flags, fast", [
    (XEON_AMX, True),
    (EPYC_9534_AVX512_BF16, True),
    (EPYC_7502_AVX2, False),
    (XEON_6140_AVX512_NO_BF16, False),
    (LOOKALIKE_WORDS, False),
    (XEON_AMX.split(": ", 1)[1], True),   # the words alone, without the "flags :" label
    ("", False),
], ids=["xeon-amx", "epyc-9534-avx512-bf16", "epyc-7502-avx2", "xeon-6140-avx512-no-bf16",
        "lookalike-words-do-not-count", "words-without-label", "no-flags"])
def test_without_a_gpu_the_cpu_flags_decide_bfloat16(flags, fast):
    from mnist_lessons.runtime import has_fast_bfloat16

    assert has_fast_bfloat16(cpu_flags=flags, gpu_capabilities=[]) is fast


@pytest.mark.parametrize("capabilities, cpu, fast", [
    ([(7, 5)], EPYC_7502_AVX2, False),                 # T4
    ([(8, 0)], EPYC_7502_AVX2, True),                  # A100
    ([(9, 0)], EPYC_7502_AVX2, True),                  # H100
    ([(8, 9)], "", True),                              # L4
    ([(7, 5)], XEON_AMX, False),                       # training runs on the T4, not the CPU
    ([(7, 5), (8, 0)], EPYC_7502_AVX2, True),          # one fast GPU is enough
], ids=["t4", "a100", "h100", "l4", "t4-beside-an-amx-cpu", "t4-and-a100"])
def test_with_a_gpu_its_compute_capability_decides_bfloat16(capabilities, cpu, fast):
    from mnist_lessons.runtime import has_fast_bfloat16

    assert has_fast_bfloat16(cpu_flags=cpu, gpu_capabilities=capabilities) is fast


def _fake_cpuinfo(flags_line: str) -> str:
    """A /proc/cpuinfo of two cores, each with its flags line among the others."""
    core = ("processor\t: {n}\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC Processor\n"
            "{flags}\nbugs\t\t: sysret_ss_attrs spectre_v1 spectre_v2\npower management:\n\n")
    return "".join(core.format(n=n, flags=flags_line) for n in range(2))


@pytest.mark.parametrize("cpuinfo, fast", [
    (_fake_cpuinfo(EPYC_9534_AVX512_BF16), True),
    (_fake_cpuinfo(EPYC_7502_AVX2), False),
    (None, False),                                     # no /proc/cpuinfo (macOS, Windows)
], ids=["epyc-9534", "epyc-7502", "no-proc-cpuinfo"])
def test_cpu_flags_are_read_from_proc_cpuinfo_when_not_given(monkeypatch, cpuinfo, fast):
    import io

    from mnist_lessons import runtime

    opened = []

    def fake_open(path, *args, **kwargs):
        opened.append(path)
        if cpuinfo is None:
            raise FileNotFoundError(path)
        return io.StringIO(cpuinfo)

    monkeypatch.setattr(runtime, "open", fake_open, raising=False)  # shadows the builtin there only
    assert runtime.has_fast_bfloat16(gpu_capabilities=[]) is fast
    assert opened == ["/proc/cpuinfo"]


def test_without_a_gpu_this_machine_is_judged_by_the_flags_lscpu_lists():
    """Nothing injected: TensorFlow finds no GPU and the flags are this machine's own, the same
    words util-linux's lscpu prints (an independent reader of the CPU's features)."""
    import shutil
    import subprocess

    from mnist_lessons.runtime import has_fast_bfloat16

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU, which decides instead of the CPU")
    if shutil.which("lscpu") is None or not Path("/proc/cpuinfo").exists():
        pytest.skip("needs Linux's lscpu")
    lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True,
                           env={"LC_ALL": "C", "PATH": "/usr/bin:/bin"}).stdout.splitlines()
    flags = next(line.split(":", 1)[1] for line in lines if line.startswith("Flags:"))
    assert has_fast_bfloat16() is has_fast_bfloat16(cpu_flags=flags, gpu_capabilities=[])
    # And the machine's own flags were read, not ignored: the answer flips with them.
    assert has_fast_bfloat16(cpu_flags=XEON_AMX) is True
    assert has_fast_bfloat16(cpu_flags=EPYC_7502_AVX2) is False


def test_has_fast_bfloat16_rejects_inputs_it_cannot_read():
    from mnist_lessons.runtime import has_fast_bfloat16

    with pytest.raises(TypeError, match="cpu_flags is the flags line as one string"):
        has_fast_bfloat16(cpu_flags=["amx_bf16"], gpu_capabilities=[])
    with pytest.raises(ValueError, match=r"compute capability is a pair such as \(8, 0\), got 8.0"):
        has_fast_bfloat16(cpu_flags="", gpu_capabilities=[8.0])

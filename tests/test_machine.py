"""Identifying this machine's CPU (nastools.machine) on x86 Linux, Arm Linux and macOS, from
real /proc/cpuinfo records and sysctl values fed through the module's private readers."""

import io
import re
import subprocess
import types

import pytest

import nastools.machine as m
from nastools.latency.table import default_table_path

# The first processor's record of /proc/cpuinfo (the kernel's format: arch/arm64/kernel/cpuinfo.c
# prints Features, CPU implementer, architecture, variant, part and revision per processor).

# AMD EPYC 9654 (Zen 4): archspec/archspec-json tests/targets/linux-rocky8.5-zen4
ZEN4 = """\
processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9654 96-Core Processor
stepping\t: 1
microcode\t: 0xa10110d
cpu MHz\t\t: 2400.000
cache size\t: 1024 KB
physical id\t: 0
siblings\t: 96
core id\t\t: 0
cpu cores\t: 96
apicid\t\t: 0
initial apicid\t: 0
fpu\t\t: yes
fpu_exception\t: yes
cpuid level\t: 16
wp\t\t: yes
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht \
syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid aperfmperf pni \
pclmulqdq monitor ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy \
svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw ibs skinit wdt tce topoext perfctr_core perfctr_nb \
bpext perfctr_llc mwaitx cpb cat_l3 cdp_l3 invpcid_single hw_pstate ssbd mba ibrs ibpb stibp vmmcall fsgsbase bmi1 \
avx2 smep bmi2 erms invpcid cqm rdt_a avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni \
avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves cqm_llc cqm_occup_llc cqm_mbm_total cqm_mbm_local avx512_bf16 clzero \
irperf xsaveerptr wbnoinvd amd_ppin arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid decodeassists \
pausefilter pfthreshold avic v_vmsave_vmload vgif v_spec_ctrl avx512vbmi umip pku ospke avx512_vbmi2 gfni vaes \
vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq la57 rdpid overflow_recov succor smca fsrm flush_l1d sme sev sev_es
bugs\t\t: sysret_ss_attrs spectre_v1 spectre_v2 spec_store_bypass
bogomips\t: 4792.38
TLB size\t: 3584 4K pages
clflush size\t: 64
cache_alignment\t: 64
address sizes\t: 52 bits physical, 57 bits virtual
power management: ts ttp tm hwpstate cpb eff_freq_ro [13] [14]
"""

# AWS Graviton 2 (Neoverse N1, c6g): archspec/archspec-json tests/targets/linux-amazon-graviton2
# (since renamed linux-amazon-neoverse_n1); that file aligns the colons with spaces
GRAVITON2 = """\
processor       : 0
BogoMIPS        : 243.75
Features        : fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant     : 0x3
CPU part        : 0xd0c
CPU revision    : 1
"""

# AWS Graviton 3 (Neoverse V1): James Clark's `head /proc/cpuinfo` on linux-kernel, 2022-12-13,
# "Re: [PATCH v2 0/4] Add VG register attr test with kernel version and feature detection"
GRAVITON3 = """\
processor\t: 0
BogoMIPS\t: 2100.00
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm jscvt fcma lrcpc dcpop \
sha3 sm3 sm4 asimddp sha512 sve asimdfhm dit uscat ilrcpc flagm ssbs paca pacg dcpodp svei8mm svebf16 i8mm bf16 dgh rng
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x1
CPU part\t: 0xd40
CPU revision\t: 1
"""

# Raspberry Pi 4 (Cortex-A72, 64-bit kernel): EESSI/software-layer
# tests/archdetect/aarch64/arm/cortex-a72/debian-rpi4.cpuinfo
RASPBERRY_PI4 = """\
processor       : 0
BogoMIPS        : 108.00
Features        : fp asimd evtstrm crc32 cpuid
CPU implementer : 0x41
CPU architecture: 8
CPU variant     : 0x0
CPU part        : 0xd08
CPU revision    : 3
"""


def on(monkeypatch, cpuinfo: str = "", sysctl: dict | None = None):
    """This machine as one whose /proc/cpuinfo record is ``cpuinfo`` ('' as on macOS) and
    whose ``sysctl`` answers ``sysctl`` (nothing, as on Linux)."""
    monkeypatch.setattr(m, "_cpuinfo_text", lambda: cpuinfo)
    monkeypatch.setattr(m, "_sysctl", lambda name: (sysctl or {}).get(name, ""))


def identity():
    return m.cpu_name(), m.cpu_isa(), m.cpu_id(), m.cpu_tag()


# sysctl values of an M3 Max, an M4 Max and an Intel Mac: archspec/archspec-json
# tests/targets/darwin-sequoia-m3, darwin-sequoia-m4, darwin-mojave-ivybridge
APPLE = {"hw.optional.arm64": "1", "hw.optional.neon": "1", "hw.optional.arm.FEAT_DotProd": "1", "hw.optional.arm.FEAT_I8MM": "1"}
M3_MAX = {**APPLE, "machdep.cpu.brand_string": "Apple M3 Max", "hw.optional.arm.FEAT_SME2": "0", "hw.cpufamily": "1912690738"}
M4_MAX = {**APPLE, "machdep.cpu.brand_string": "Apple M4 Max", "hw.optional.arm.FEAT_SME2": "1", "hw.cpufamily": "399882554"}
INTEL_MAC = {
    "machdep.cpu.vendor": "GenuineIntel",
    "machdep.cpu.brand_string": "Intel(R) Core(TM) i5-3230M CPU @ 2.60GHz",
    "machdep.cpu.family": "6",
    "machdep.cpu.model": "58",
    "machdep.cpu.features": "FPU VME DE PSE TSC MSR PAE MCE CX8 APIC SEP MTRR PGE MCA CMOV PAT PSE36 CLFSH DS ACPI MMX FXSR "
    "SSE SSE2 SS HTT TM PBE SSE3 PCLMULQDQ DTES64 MON DSCPL VMX EST TM2 SSSE3 CX16 TPR PDCM SSE4.1 SSE4.2 x2APIC POPCNT AES "
    "PCID XSAVE OSXSAVE TSCTMR AVX1.0 RDRAND F16C",
    "machdep.cpu.leaf7_features": "RDWRFSGS SMEP ERMS MDCLEAR IBRS STIBP L1DF SSBD",
}


@pytest.mark.parametrize(
    "cpuinfo, sysctl, want",
    [
        # the strings the shipped tables record; Zen 4's flags hold `sme` (AMD memory encryption), not Arm's SME
        (ZEN4, {}, ("AMD EPYC 9654 96-Core Processor", "avx512_vnni", "AuthenticAMD family 25 model 17", "avx512-vnni-f25m17")),
        (GRAVITON2, {}, ("ARM Neoverse-N1", "asimddp", "ARM implementer 0x41 part 0xd0c variant 0x3", "asimddp-i41pd0cv3")),
        (GRAVITON3, {}, ("ARM Neoverse-V1", "sve", "ARM implementer 0x41 part 0xd40 variant 0x1", "sve-i41pd40v1")),
        (RASPBERRY_PI4, {}, ("ARM Cortex-A72", "asimd", "ARM implementer 0x41 part 0xd08 variant 0x0", "asimd-i41pd08v0")),
        ("", M3_MAX, ("Apple M3 Max", "i8mm", "Apple cpufamily 0x72015832", "i8mm-cf72015832")),
        ("", M4_MAX, ("Apple M4 Max", "sme2", "Apple cpufamily 0x17d5b93a", "sme2-cf17d5b93a")),
        ("", INTEL_MAC, ("Intel(R) Core(TM) i5-3230M CPU @ 2.60GHz", "avx", "GenuineIntel family 6 model 58", "avx-f6m58")),
    ],
    ids=["x86-linux-zen4", "graviton2", "graviton3", "raspberry-pi-4", "macos-m3-max", "macos-m4-max", "macos-intel"],
)
def test_the_cpu_is_named_with_its_extension_and_generation(monkeypatch, cpuinfo, sysctl, want):
    on(monkeypatch, cpuinfo, sysctl)
    assert identity() == want
    # table and result file names stay plain
    name = default_table_path("fmnist", m.cpu_name(), "ort", "fp32", 1, threads=1).name
    assert re.fullmatch(r"[a-z0-9-]+__ort__fp32__b1\.json", name) and re.fullmatch(r"[a-z0-9-]+", m.cpu_tag())


def test_a_graviton2_table_is_another_cpu_on_a_graviton3(monkeypatch):
    on(monkeypatch, GRAVITON2)
    graviton2 = {"device": m.cpu_name(), **m.this_generation()}
    on(monkeypatch, GRAVITON3)
    assert m.cpu_match(graviton2) == 0
    assert m.cpu_match({"device": m.cpu_name(), **m.this_generation()}) == 3
    # another revision of the same core: the same model name, another generation
    on(monkeypatch, GRAVITON3.replace("CPU variant\t: 0x1", "CPU variant\t: 0x0"))
    other = {"device": "ARM Neoverse-V1", "cpu_isa": "sve", "cpu_id": "ARM implementer 0x41 part 0xd40 variant 0x1"}
    assert m.cpu_match(other) == 2 and m.generation_mismatch(other) == ["cpu_id"]


def test_an_arm_core_not_in_the_table_is_named_by_its_numbers(monkeypatch):
    on(monkeypatch, GRAVITON3.replace("0xd40", "0xd8f"))  # a part number the table does not list
    assert m.cpu_name() == "ARM implementer 0x41 part 0xd8f"
    assert m.cpu_id() == "ARM implementer 0x41 part 0xd8f variant 0x1"


def test_only_the_first_processor_of_proc_cpuinfo_is_read(monkeypatch):
    second = GRAVITON2.replace("processor       : 0", "processor       : 1").replace("0xd0c", "0xd40")
    monkeypatch.setattr(m, "open", lambda path: io.StringIO(GRAVITON2 + "\n" + second), raising=False)
    assert m._cpuinfo_text() == GRAVITON2 and m.cpu_name() == "ARM Neoverse-N1"

    def missing(path):
        raise FileNotFoundError(path)

    monkeypatch.setattr(m, "open", missing, raising=False)
    assert m._cpuinfo_text() == "" and m._cpuinfo() == {}


def test_sysctl_answers_nothing_off_macos_and_never_raises(monkeypatch):
    sysctl = m._sysctl.__wrapped__  # past its cache
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a) or types.SimpleNamespace(returncode=0, stdout="Apple M2 Pro\n"))
    monkeypatch.setattr(m, "sys", types.SimpleNamespace(platform="linux"))
    assert sysctl("machdep.cpu.brand_string") == "" and calls == []
    monkeypatch.setattr(m, "sys", types.SimpleNamespace(platform="darwin"))
    assert sysctl("machdep.cpu.brand_string") == "Apple M2 Pro"
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: types.SimpleNamespace(returncode=1, stdout=""))  # unknown name
    assert sysctl("hw.optional.arm.FEAT_NOPE") == ""
    for error in (FileNotFoundError("sysctl"), subprocess.TimeoutExpired("sysctl", 2)):

        def fail(*a, error=error, **k):
            raise error

        monkeypatch.setattr(subprocess, "run", fail)
        assert sysctl("machdep.cpu.brand_string") == ""


def test_without_proc_meminfo_memory_is_unknown_not_an_error(monkeypatch):
    def missing():
        raise FileNotFoundError("/proc/meminfo")

    monkeypatch.setattr(m, "_meminfo", missing)
    assert m.memory_low() is False
    free = m.available_memory()  # a cgroup limit where there is one, else unknown
    assert free is None or free >= 0

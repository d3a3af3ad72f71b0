"""The load test's readings of the machine (cat_reward.loadtest.host): steal and busy time from
/proc/stat, and the reference workload that makes CPU figures comparable across machines."""

from __future__ import annotations

import time

import pytest

from cat_reward.loadtest import host


def _stat(tmp_path, line: str):
    path = tmp_path / "stat"
    path.write_text(line + "\ncpu0 1 2 3 4 5 6 7 8 0 0\nintr 0\n")
    return path


def test_ticks_are_read_by_kind_from_the_first_line(tmp_path):
    ticks = host.cpu_ticks(_stat(tmp_path, "cpu  100 5 20 900 10 0 3 40 0 0"))
    assert ticks == {"user": 100, "nice": 5, "system": 20, "idle": 900, "iowait": 10, "irq": 0, "softirq": 3, "steal": 40}


def test_an_old_kernel_without_steal_reads_zero_steal(tmp_path):
    ticks = host.cpu_ticks(_stat(tmp_path, "cpu  100 5 20 900"))
    assert ticks["steal"] == 0 and ticks["softirq"] == 0 and ticks["user"] == 100


@pytest.mark.parametrize("text", ["", "intr 0 0\n", "not a stat file"])
def test_a_file_that_is_not_proc_stat_reads_none(tmp_path, text):
    path = tmp_path / "stat"
    path.write_text(text)
    assert host.cpu_ticks(path) is None
    assert host.cpu_ticks(tmp_path / "missing") is None


def test_contention_is_steal_over_the_time_the_cpus_wanted():
    before = dict(user=1000, nice=0, system=100, idle=5000, iowait=0, irq=0, softirq=0, steal=50)
    after = dict(user=1600, nice=0, system=200, idle=6000, iowait=100, irq=0, softirq=100, steal=850)
    reading = host.contention(before, after, clk_tck=100)
    # busy: 600 + 100 + 100 ticks = 8 s; stolen: 800 ticks = 8 s; idle 1000 + 100 ticks
    assert reading == {"busy_s": 8.0, "idle_s": 11.0, "steal_s": 8.0, "steal_share": 0.5}


def test_contention_of_an_idle_interval_or_a_missing_reading():
    same = dict.fromkeys(host.STAT_FIELDS, 7)
    assert host.contention(same, same, 100)["steal_share"] == 0.0
    assert host.contention(None, same, 100) is None and host.contention(same, None, 100) is None


def test_the_reference_workload_is_fixed():
    assert host.reference_work() == host.reference_work()  # the same work every time
    assert host.reference_work(rounds=2) != host.reference_work(rounds=3)


def test_the_probe_reads_the_reference_time_until_stopped():
    probe = host.ReferenceProbe(interval_s=0.05)
    probe.start()
    time.sleep(1.5)  # the interpreter's start-up, then readings every 50 ms
    probe.stop()
    probe.stop()  # a second stop does nothing
    assert len(probe.readings) >= 3 and all(r > 0 for r in probe.readings)
    summary = probe.summary()
    assert summary["readings"] == len(probe.readings)
    assert summary["min_ms"] <= summary["median_ms"] <= summary["max_ms"]


def test_a_probe_stopped_at_once_or_never_started_has_no_summary_or_one_reading():
    never = host.ReferenceProbe()
    never.stop()
    assert never.readings == [] and never.summary() is None
    quick = host.ReferenceProbe(interval_s=30)
    quick.start()
    started = time.monotonic()
    quick.stop()  # it does not wait out its interval
    assert time.monotonic() - started < 10 and len(quick.readings) <= 1


def test_the_cpu_model_is_read_from_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text("processor\t: 0\nmodel name\t: Example CPU @ 2.60GHz\nflags\t: fpu\n")
    assert host.cpu_model(path) == "Example CPU @ 2.60GHz"
    assert host.cpu_model(tmp_path / "missing") is None


def _task(proc, pid: int, tid: int, voluntary: int, involuntary: int) -> None:
    status = proc / str(pid) / "task" / str(tid) / "status"
    status.parent.mkdir(parents=True, exist_ok=True)
    status.write_text(f"Name:\tcat-reward\nState:\tS (sleeping)\nvoluntary_ctxt_switches:\t{voluntary}\n"
                      f"nonvoluntary_ctxt_switches:\t{involuntary}\n")


def test_context_switches_are_read_per_thread(tmp_path):
    _task(tmp_path, 7, 7, 100, 5)
    _task(tmp_path, 7, 9, 40, 1)
    assert host.context_switches(7, tmp_path) == {"7": (100, 5), "9": (40, 1)}
    assert host.context_switches(8, tmp_path) is None  # no such process


def test_switches_between_count_new_threads_from_zero_and_name_ended_ones():
    before = {"7": (100, 5), "9": (40, 1)}
    after = {"7": (130, 9), "11": (6, 2)}  # thread 9 ended, thread 11 started
    assert host.switches_between(before, after) == {"voluntary": 36, "involuntary": 6, "threads": 2, "threads_ended": 1}
    assert host.switches_between(None, after) is None


def test_this_process_switches_when_it_sleeps():
    import os

    before = host.context_switches(os.getpid())
    time.sleep(0.01)
    reading = host.switches_between(before, host.context_switches(os.getpid()))
    assert reading["voluntary"] >= 1


def test_a_thread_without_readable_counters_is_skipped(tmp_path):
    _task(tmp_path, 7, 7, 100, 5)
    odd = tmp_path / "7" / "task" / "8" / "status"
    odd.parent.mkdir(parents=True)
    odd.write_text("Name:\tcat-reward\nState:\tS (sleeping)\n")  # no counters (not Linux's format)
    (tmp_path / "7" / "task" / "9").mkdir()  # ended between listing and reading: no status file
    assert host.context_switches(7, tmp_path) == {"7": (100, 5)}
    assert host.switches_between({"7": (100, 5)}, None) is None


def test_the_replicas_switches_are_summed_and_none_when_any_is_unread():
    from cat_reward.loadtest.runner import total_switches

    one = {"voluntary": 10, "involuntary": 2, "threads": 3, "threads_ended": 0}
    two = {"voluntary": 5, "involuntary": 1, "threads": 4, "threads_ended": 1}
    assert total_switches([one, two]) == {"voluntary": 15, "involuntary": 3, "threads": 7, "threads_ended": 1}
    assert total_switches(iter([one])) == one
    assert total_switches([one, None]) is None
    assert total_switches([]) is None

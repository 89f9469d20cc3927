"""Native threads for the kernels: a persistent pool of worker threads and the thread count.

A threaded kernel hands its schedule to ``tracejit_pool_run(fn, ctx, n)``: the caller runs
``fn(ctx, 0, n)`` itself while worker t runs ``fn(ctx, t, n)``; it returns when all have finished.
The schedule (codegen.KernelGen.finish_threaded) is a list of steps; threads claim a step's chunks
from a counter in the call's own frame and count them done in another, and wait with
``tracejit_wait`` until the previous step is complete before starting the next. Any thread can do any
chunk, so a worker that is late (asleep, or preempted on a busy machine) only leaves more chunks to
the others; one that has not started when the caller is done is cancelled. Everything here is native
code (LLVM IR linked once into the process's JIT): the workers never touch Python, and ctypes releases
the GIL around a kernel call.

Waiting pauses (``pause``) for ``YIELD_US``, then also yields the CPU each round until ``SPIN_US``
(read from the cycle counter), then sleeps on a futex; a worker that finished a job waits ``IDLE_US``
that way for the next one before it sleeps. Measured on a 2-core VM shared with other work: a pure
spin lost ~100 us per wait whenever the thread waited for shared the waiter's core (it burns the
slice its partner needs), sleeping at once costs a futex wake (5-40 us) per wait; yielding after a
few microseconds keeps both small. A call whose caller spent more than half its time waiting (a
worker preempted mid-chunk) makes the next 2, 4, ... 256 calls run alone (backoff, see ``stats``).

Reentrancy: one call holds the pool at a time; a call that finds it taken (another Python thread is
inside a threaded kernel) runs its whole schedule on its own thread (``fn(ctx, 0, 1)``): the chunks
are the same, so the results are the same bits. Workers are created with pthread_create (resolved
from libc, like libm's symbols); after ``os.fork()`` the child, which has none, starts its own; at
exit they are stopped and joined before the JIT's memory goes away.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import platform
import threading
import time

MAX_THREADS = 256
_SYS_FUTEX = {"x86_64": 202, "amd64": 202, "aarch64": 98, "arm64": 98}
_PAUSE = {"x86_64": "call void @llvm.x86.sse2.pause()", "amd64": "call void @llvm.x86.sse2.pause()",
          "aarch64": "call void @llvm.aarch64.hint(i32 1)", "arm64": "call void @llvm.aarch64.hint(i32 1)"}
_PAUSE_DECL = {"x86_64": "declare void @llvm.x86.sse2.pause()", "amd64": "declare void @llvm.x86.sse2.pause()",
               "aarch64": "declare void @llvm.aarch64.hint(i32)", "arm64": "declare void @llvm.aarch64.hint(i32)"}

# Mailbox (one per worker, on its own 128-byte line): gen (futex word), sleeping, state, fn, ctx, tid, n.
# state: 0 idle, 1 posted, 2 running. The caller cancels a posted job the worker has not taken yet.
_MAIL_FIELDS = {"genp": 0, "sleepp": 1, "statep": 2, "fnp": 4, "ctxp": 5, "tidp": 6, "np": 7}


def _mailbox(maxw: int) -> str:
    """IR: %mb = worker %slot's mailbox, and a pointer to each of its fields (worker and post)."""
    lines = [f"  %mb = getelementptr [{maxw} x %Mail], ptr @tj_mail, i64 0, i64 %slot"]
    lines += [f"  %{name} = getelementptr %Mail, ptr %mb, i64 0, i32 {i}" for name, i in _MAIL_FIELDS.items()]
    return "\n".join(lines)


_IR = r"""
%Mail = type {{ i32, i32, i32, i32, ptr, ptr, i64, i64, [80 x i8] }}

@tracejit_num_threads = global i64 1, align 64
@tj_workers = global i64 0, align 64
@tj_busy = global i32 0, align 64
@tj_pending = global i32 0, align 64
@tj_caller_sleeping = global i32 0, align 64
@tj_quit = global i32 0, align 64
@tj_idle_ticks = global i64 0, align 64
@tj_spin_ticks = global i64 0, align 64
@tj_yield_ticks = global i64 0, align 64
@tj_caller_wait = global i64 0, align 64     ; cycles the pool's caller spent waiting (tracejit_wait)
@tj_skip = global i64 0, align 64            ; calls left to run alone (backing off a busy machine)
@tj_level = global i64 0, align 64           ; log2 of the next backoff
@tj_stats = global [4 x i64] zeroinitializer, align 64   ; threaded, alone (pool busy), skipped, contended
@tj_mail = global [{maxw} x %Mail] zeroinitializer, align 128

declare i64 @syscall(i64, ...)
declare i32 @sched_yield()
declare i64 @llvm.readcyclecounter()
{pause_decl}

define internal void @futex_wait(ptr %addr, i32 %val) {{
  %r = call i64 (i64, ...) @syscall(i64 {futex}, ptr %addr, i32 128, i32 %val, ptr null)
  ret void
}}

define internal void @futex_wake(ptr %addr, i32 %count) {{
  %r = call i64 (i64, ...) @syscall(i64 {futex}, ptr %addr, i32 129, i32 %count)
  ret void
}}

; Spin until *addr != val (returns 1) or the time budget (ticks of the cycle counter; also at most
; 2^24 rounds where the counter does not run) is spent (returns 0). After the first tj_yield_ticks
; each round also yields the CPU: when the thread we wait for is queued on our core (the machine is
; busy), pausing would only burn the time slice it needs.
define internal i1 @spin_while_eq(ptr %addr, i32 %val, i64 %ticks) {{
entry:
  %t0 = call i64 @llvm.readcyclecounter()
  %deadline = add i64 %t0, %ticks
  %ytick = load atomic i64, ptr @tj_yield_ticks monotonic, align 8
  %ystart = add i64 %t0, %ytick
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %cont ]
  %yielding = phi i1 [ 0, %entry ], [ %yielding1, %cont ]
  %v = load atomic i32, ptr %addr acquire, align 4
  %ne = icmp ne i32 %v, %val
  br i1 %ne, label %changed, label %pause
pause:
  br i1 %yielding, label %yield, label %spin
yield:
  %y = call i32 @sched_yield()
  br label %spin
spin:
  {pause}
  %i1 = add i64 %i, 1
  %check = and i64 %i1, 15
  %tick = icmp eq i64 %check, 0
  br i1 %tick, label %clock, label %cont
clock:
  %t = call i64 @llvm.readcyclecounter()
  %late = icmp uge i64 %t, %deadline
  %many = icmp uge i64 %i1, 16777216
  %stop = or i1 %late, %many
  %ynow = icmp uge i64 %t, %ystart
  br i1 %stop, label %timeout, label %cont
cont:
  %yielding1 = phi i1 [ %yielding, %spin ], [ %ynow, %clock ]
  br label %loop
changed:
  ret i1 1
timeout:
  ret i1 0
}}

; Wait until *addr != val: spin, then sleep on the futex with *flag raised (whoever changes *addr
; wakes the futex when it sees *flag raised; both sides use sequentially consistent accesses).
define internal void @wait_while_eq(ptr %addr, i32 %val, ptr %flag, i64 %ticks) {{
entry:
  %done = call i1 @spin_while_eq(ptr %addr, i32 %val, i64 %ticks)
  br i1 %done, label %out, label %sleep
sleep:
  atomicrmw add ptr %flag, i32 1 seq_cst
  br label %check
check:
  %v = load atomic i32, ptr %addr seq_cst, align 4
  %ne = icmp ne i32 %v, %val
  br i1 %ne, label %woke, label %wait
wait:
  call void @futex_wait(ptr %addr, i32 %val)
  br label %check
woke:
  atomicrmw sub ptr %flag, i32 1 seq_cst
  br label %out
out:
  ret void
}}

define ptr @tracejit_worker(ptr %arg) {{
entry:
  %idx = ptrtoint ptr %arg to i64
  %slot = sub i64 %idx, 1
{mailbox}
  %g0 = load atomic i32, ptr %genp acquire, align 4
  br label %wait
wait:
  %seen = phi i32 [ %g0, %entry ], [ %g, %finish ], [ %g, %take ]
  ; quit is checked before waiting too: a worker that starts after stop() bumped its generation
  ; would otherwise wait for a change that never comes (stop sets quit before the bump)
  %q0 = load atomic i32, ptr @tj_quit acquire, align 4
  %quitting = icmp ne i32 %q0, 0
  br i1 %quitting, label %exit, label %sleep
sleep:
  %ticks = load atomic i64, ptr @tj_idle_ticks monotonic, align 8
  call void @wait_while_eq(ptr %genp, i32 %seen, ptr %sleepp, i64 %ticks)
  %g = load atomic i32, ptr %genp acquire, align 4
  %quit = load atomic i32, ptr @tj_quit acquire, align 4
  %stop = icmp ne i32 %quit, 0
  br i1 %stop, label %exit, label %take
take:
  %pair = cmpxchg ptr %statep, i32 1, i32 2 acq_rel acquire
  %got = extractvalue {{ i32, i1 }} %pair, 1
  br i1 %got, label %run, label %wait
run:
  %fn = load ptr, ptr %fnp, align 8
  %ctx = load ptr, ptr %ctxp, align 8
  %tid = load i64, ptr %tidp, align 8
  %n = load i64, ptr %np, align 8
  call void %fn(ptr %ctx, i64 %tid, i64 %n)
  store atomic i32 0, ptr %statep release, align 4
  %old = atomicrmw sub ptr @tj_pending, i32 1 seq_cst
  %last = icmp eq i32 %old, 1
  br i1 %last, label %maybe_wake, label %finish
maybe_wake:
  %cs = load atomic i32, ptr @tj_caller_sleeping seq_cst, align 4
  %sleeping = icmp ne i32 %cs, 0
  br i1 %sleeping, label %wake, label %finish
wake:
  call void @futex_wake(ptr @tj_pending, i32 1)
  br label %finish
finish:
  br label %wait
exit:
  ret ptr null
}}

; Post a job to workers 1..n-1 (their mailboxes), without waiting.
define internal void @post(ptr %fn, ptr %ctx, i64 %n) {{
entry:
  br label %loop
loop:
  %t = phi i64 [ 1, %entry ], [ %t1, %next ]
  %more = icmp slt i64 %t, %n
  br i1 %more, label %body, label %done
body:
  %slot = sub i64 %t, 1
{mailbox}
  store ptr %fn, ptr %fnp, align 8
  store ptr %ctx, ptr %ctxp, align 8
  store i64 %t, ptr %tidp, align 8
  store i64 %n, ptr %np, align 8
  store atomic i32 1, ptr %statep release, align 4
  %g = load i32, ptr %genp, align 4
  %g1 = add i32 %g, 1
  store atomic i32 %g1, ptr %genp seq_cst, align 4
  %sl = load atomic i32, ptr %sleepp seq_cst, align 4
  %asleep = icmp ne i32 %sl, 0
  br i1 %asleep, label %wake, label %next
wake:
  call void @futex_wake(ptr %genp, i32 1)
  br label %next
next:
  %t1 = add i64 %t, 1
  br label %loop
done:
  ret void
}}

; Take back the jobs no worker has started (the caller did all the work): returns how many.
define internal i32 @cancel(i64 %n) {{
entry:
  br label %loop
loop:
  %t = phi i64 [ 1, %entry ], [ %t1, %next ]
  %count = phi i32 [ 0, %entry ], [ %count1, %next ]
  %more = icmp slt i64 %t, %n
  br i1 %more, label %body, label %done
body:
  %slot = sub i64 %t, 1
  %mb = getelementptr [{maxw} x %Mail], ptr @tj_mail, i64 0, i64 %slot
  %statep = getelementptr %Mail, ptr %mb, i64 0, i32 2
  %pair = cmpxchg ptr %statep, i32 1, i32 0 acq_rel monotonic
  %got = extractvalue {{ i32, i1 }} %pair, 1
  %inc = zext i1 %got to i32
  br label %next
next:
  %count1 = add i32 %count, %inc
  %t1 = add i64 %t, 1
  br label %loop
done:
  ret i32 %count
}}

; Run fn(ctx, tid, n) on n threads (the caller is thread 0); n is cut to the workers there are, and
; to 1 when another call holds the pool. fn must let any thread do any part of the work (threaded
; kernels claim chunks from counters in ctx), so a worker that has not started when the caller
; is done is simply cancelled. A call in which the caller spent more than half its time waiting for
; the others (a worker preempted on a busy machine) makes the next 2, 4, ... 256 calls run alone;
; a call that waited less than an eighth shortens the next backoff.
define void @tracejit_pool_run(ptr %fn, ptr %ctx, i64 %want) {{
entry:
  %w = load atomic i64, ptr @tj_workers acquire, align 8
  %w1 = add i64 %w, 1
  %less = icmp slt i64 %want, %w1
  %n = select i1 %less, i64 %want, i64 %w1
  %multi = icmp sgt i64 %n, 1
  br i1 %multi, label %backoff, label %alone
backoff:
  %skip = load atomic i64, ptr @tj_skip monotonic, align 8
  %skipping = icmp sgt i64 %skip, 0
  br i1 %skipping, label %skipped, label %lock
skipped:
  %skip1 = sub i64 %skip, 1
  store atomic i64 %skip1, ptr @tj_skip monotonic, align 8
  %s2 = getelementptr [4 x i64], ptr @tj_stats, i64 0, i64 2
  atomicrmw add ptr %s2, i64 1 monotonic
  br label %alone
lock:
  %pair = cmpxchg ptr @tj_busy, i32 0, i32 1 acquire monotonic
  %got = extractvalue {{ i32, i1 }} %pair, 1
  br i1 %got, label %threads, label %busy
busy:
  %s1 = getelementptr [4 x i64], ptr @tj_stats, i64 0, i64 1
  atomicrmw add ptr %s1, i64 1 monotonic
  br label %alone
alone:
  call void %fn(ptr %ctx, i64 0, i64 1)
  ret void
threads:
  %t0 = call i64 @llvm.readcyclecounter()
  %cw0 = load atomic i64, ptr @tj_caller_wait monotonic, align 8
  %others = sub i64 %n, 1
  %others32 = trunc i64 %others to i32
  store atomic i32 %others32, ptr @tj_pending seq_cst, align 4
  call void @post(ptr %fn, ptr %ctx, i64 %n)
  call void %fn(ptr %ctx, i64 0, i64 %n)
  %cancelled = call i32 @cancel(i64 %n)
  %old = atomicrmw sub ptr @tj_pending, i32 %cancelled seq_cst
  %ticks = load atomic i64, ptr @tj_spin_ticks monotonic, align 8
  %tw = call i64 @llvm.readcyclecounter()
  br label %wait
wait:
  %p = load atomic i32, ptr @tj_pending acquire, align 4
  %zero = icmp eq i32 %p, 0
  br i1 %zero, label %done, label %sleep
sleep:
  call void @wait_while_eq(ptr @tj_pending, i32 %p, ptr @tj_caller_sleeping, i64 %ticks)
  br label %wait
done:
  %t1 = call i64 @llvm.readcyclecounter()
  %cw1 = load atomic i64, ptr @tj_caller_wait monotonic, align 8
  %inner = sub i64 %cw1, %cw0
  %final = sub i64 %t1, %tw
  %waited = add i64 %inner, %final
  %total = sub i64 %t1, %t0
  %twice = shl i64 %waited, 1
  %bad = icmp ugt i64 %twice, %total
  %s0 = getelementptr [4 x i64], ptr @tj_stats, i64 0, i64 0
  atomicrmw add ptr %s0, i64 1 monotonic
  %lvl = load atomic i64, ptr @tj_level monotonic, align 8
  br i1 %bad, label %contended, label %maybe_clean
contended:
  %s3 = getelementptr [4 x i64], ptr @tj_stats, i64 0, i64 3
  atomicrmw add ptr %s3, i64 1 monotonic
  %up = add i64 %lvl, 1
  %cap = icmp ugt i64 %up, 8
  %lvl1 = select i1 %cap, i64 8, i64 %up
  store atomic i64 %lvl1, ptr @tj_level monotonic, align 8
  %calls = shl i64 1, %lvl1
  store atomic i64 %calls, ptr @tj_skip monotonic, align 8
  br label %release
maybe_clean:
  %eight = shl i64 %waited, 3
  %clean = icmp ult i64 %eight, %total
  %pos = icmp ugt i64 %lvl, 0
  %down = and i1 %clean, %pos
  br i1 %down, label %lower, label %release
lower:
  %lvl2 = sub i64 %lvl, 1
  store atomic i64 %lvl2, ptr @tj_level monotonic, align 8
  br label %release
release:
  store atomic i32 0, ptr @tj_busy release, align 4
  ret void
}}

; Wait until *done == target (a step of a threaded kernel is complete); *sleepers counts sleepers.
; Thread 0 (the pool's caller) adds the cycles it waited to tj_caller_wait.
define void @tracejit_wait(ptr %done, i32 %target, ptr %sleepers, i64 %tid) {{
entry:
  %ticks = load atomic i64, ptr @tj_spin_ticks monotonic, align 8
  %t0 = call i64 @llvm.readcyclecounter()
  br label %check
check:
  %d = load atomic i32, ptr %done acquire, align 4
  %ok = icmp eq i32 %d, %target
  br i1 %ok, label %out, label %wait
wait:
  call void @wait_while_eq(ptr %done, i32 %d, ptr %sleepers, i64 %ticks)
  br label %check
out:
  %caller = icmp eq i64 %tid, 0
  br i1 %caller, label %count, label %ret
count:
  %t1 = call i64 @llvm.readcyclecounter()
  %dt = sub i64 %t1, %t0
  atomicrmw add ptr @tj_caller_wait, i64 %dt monotonic
  br label %ret
ret:
  ret void
}}

; One more chunk of a step is complete; the last one wakes the sleepers.
define void @tracejit_done(ptr %done, i32 %target, ptr %sleepers) {{
entry:
  %old = atomicrmw add ptr %done, i32 1 seq_cst
  %new = add i32 %old, 1
  %last = icmp eq i32 %new, %target
  br i1 %last, label %check, label %out
check:
  %s = load atomic i32, ptr %sleepers seq_cst, align 4
  %any = icmp ne i32 %s, 0
  br i1 %any, label %wake, label %out
wake:
  call void @futex_wake(ptr %done, i32 2147483647)
  br label %out
out:
  ret void
}}

define i64 @tracejit_cycles() {{
  %t = call i64 @llvm.readcyclecounter()
  ret i64 %t
}}
"""

EXPORTS = ("tracejit_num_threads", "tracejit_pool_run", "tracejit_wait", "tracejit_done")


def available() -> bool:
    """Native threads need Linux (futex) on x86-64 or AArch64."""
    return platform.system() == "Linux" and platform.machine().lower() in _SYS_FUTEX


def _default_threads() -> int:
    env = os.environ.get("TRACEJIT_NUM_THREADS")
    if env:
        try:
            return max(1, min(MAX_THREADS, int(env)))
        except ValueError:
            pass
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class _Config:
    def __init__(self):
        self.threads = _default_threads() if available() else 1


CONFIG = _Config()
IDLE_US = float(os.environ.get("TRACEJIT_IDLE_US", 100.0))    # a worker waits this long for the next job
SPIN_US = float(os.environ.get("TRACEJIT_SPIN_US", 100.0))    # a step / join waits this long before sleeping
YIELD_US = float(os.environ.get("TRACEJIT_YIELD_US", 2.0))    # ... pausing only for this long, then yielding too


class Pool:
    """The process's worker threads and the native runtime they run (created on first use)."""

    def __init__(self):
        from .engine import engine
        arch = platform.machine().lower()
        eng = engine()
        text = _IR.format(maxw=MAX_THREADS - 1, futex=_SYS_FUTEX[arch], pause=_PAUSE[arch],
                          pause_decl=_PAUSE_DECL[arch], mailbox=_mailbox(MAX_THREADS - 1))
        text = f'target triple = "{eng.host.triple}"\n' + text
        self.libc = ctypes.CDLL(None)
        optimized = eng.optimize(text)
        names = list(EXPORTS) + ["tracejit_worker", "tracejit_cycles", "tj_workers", "tj_busy", "tj_pending",
                                 "tj_quit", "tj_idle_ticks", "tj_spin_ticks", "tj_yield_ticks", "tj_mail", "tj_caller_sleeping",
                                 "tj_stats", "tj_skip", "tj_level"]
        syscall = ctypes.cast(self.libc.syscall, ctypes.c_void_p).value
        sched_yield = ctypes.cast(self.libc.sched_yield, ctypes.c_void_p).value
        self.tracker, self.addr = eng.link(optimized, [], names, imports={"syscall": syscall,
                                                                          "sched_yield": sched_yield})
        self.symbols = {n: self.addr[n] for n in EXPORTS}
        self._i64 = {n: ctypes.c_int64.from_address(self.addr[n])
                     for n in ("tracejit_num_threads", "tj_workers", "tj_idle_ticks", "tj_spin_ticks",
                                    "tj_yield_ticks", "tj_skip", "tj_level")}
        self._i32 = {n: ctypes.c_int32.from_address(self.addr[n])
                     for n in ("tj_busy", "tj_pending", "tj_quit", "tj_caller_sleeping")}
        self._cycles = ctypes.CFUNCTYPE(ctypes.c_int64)(self.addr["tracejit_cycles"])
        self.ticks_per_us = self._calibrate()
        self.set_wait(IDLE_US, SPIN_US, YIELD_US)
        self._create = self.libc.pthread_create
        self._create.argtypes = [ctypes.POINTER(ctypes.c_ulong), ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._join = self.libc.pthread_join
        self._join.argtypes = [ctypes.c_ulong, ctypes.c_void_p]
        self.handles: list[int] = []
        self.lock = threading.Lock()
        self._i64["tracejit_num_threads"].value = CONFIG.threads

    def _calibrate(self) -> float:
        t0, c0 = time.perf_counter(), self._cycles()
        time.sleep(0.005)
        t1, c1 = time.perf_counter(), self._cycles()
        rate = (c1 - c0) / ((t1 - t0) * 1e6)
        return rate if rate > 0 else 1000.0

    def set_wait(self, idle_us: float, spin_us: float, yield_us: float | None = None) -> None:
        self._i64["tj_idle_ticks"].value = int(idle_us * self.ticks_per_us)
        self._i64["tj_spin_ticks"].value = int(spin_us * self.ticks_per_us)
        if yield_us is not None:
            self._i64["tj_yield_ticks"].value = int(yield_us * self.ticks_per_us)

    def stats(self) -> dict:
        """Counts of pool calls: run on threads, run alone because another call held the pool,
        run alone while backing off, and threaded calls that waited more than half their time."""
        raw = (ctypes.c_int64 * 4).from_address(self.addr["tj_stats"])
        return {"threaded": raw[0], "alone_busy": raw[1], "alone_backoff": raw[2], "contended": raw[3],
                "backoff_level": self._i64["tj_level"].value}

    def reset_backoff(self) -> None:
        self._i64["tj_skip"].value = 0
        self._i64["tj_level"].value = 0

    def set_threads(self, n: int) -> None:
        self._i64["tracejit_num_threads"].value = n
        self.ensure_workers(n - 1)

    def ensure_workers(self, count: int) -> None:
        count = min(count, MAX_THREADS - 1)
        with self.lock:
            while len(self.handles) < count:
                handle = ctypes.c_ulong()
                rc = self._create(ctypes.byref(handle), None, self.addr["tracejit_worker"],
                                  len(self.handles) + 1)
                if rc != 0:
                    break                              # no more threads: kernels use the ones there are
                self.handles.append(handle.value)
                self._i64["tj_workers"].value = len(self.handles)

    def stop(self) -> None:
        """Stop and join the workers (at exit, before the JIT's code is unmapped)."""
        with self.lock:
            if not self.handles:
                return
            deadline = time.monotonic() + 2.0
            while self._i32["tj_busy"].value and time.monotonic() < deadline:
                time.sleep(0.001)                     # a kernel still running in another thread
            if self._i32["tj_busy"].value:
                return
            self._i64["tj_workers"].value = 0
            self._i32["tj_quit"].value = 1
            mail = self.addr["tj_mail"]
            futex = _SYS_FUTEX[platform.machine().lower()]
            for t in range(len(self.handles)):
                gen = ctypes.c_int32.from_address(mail + 128 * t)
                gen.value += 1
                self.libc.syscall(ctypes.c_long(futex), ctypes.c_void_p(mail + 128 * t), ctypes.c_int(129),
                                  ctypes.c_int(1))
            for h in self.handles:
                self._join(h, None)
            self.handles = []
            self._i32["tj_quit"].value = 0

    def after_fork_in_child(self) -> None:
        """The child of a fork has no workers: reset the pool's state and start new ones."""
        had = len(self.handles)
        self.lock = threading.Lock()
        self.handles = []
        self._i64["tj_workers"].value = 0
        for n in ("tj_busy", "tj_pending", "tj_caller_sleeping"):
            self._i32[n].value = 0
        mail = self.addr["tj_mail"]
        for t in range(MAX_THREADS - 1):
            ctypes.c_int32.from_address(mail + 128 * t + 4).value = 0
        if had:
            self.ensure_workers(had)


_POOL: Pool | None = None
_POOL_LOCK = threading.Lock()


def pool() -> Pool:
    global _POOL
    if _POOL is None:
        with _POOL_LOCK:
            if _POOL is None:
                _POOL = Pool()
                atexit.register(_POOL.stop)
                if hasattr(os, "register_at_fork"):
                    os.register_at_fork(after_in_child=_after_fork)
    return _POOL


def _after_fork() -> None:
    if _POOL is not None:
        _POOL.after_fork_in_child()


def set_num_threads(n: int) -> None:
    """Threads for native kernels: kernels compiled afterwards plan for n threads; already compiled
    kernels use at most min(n, the count they were compiled for)."""
    n = int(n)
    if n < 1:
        raise ValueError(f"set_num_threads: need at least 1 thread, got {n}")
    n = min(n, MAX_THREADS)
    if not available():
        n = 1
    CONFIG.threads = n
    if _POOL is not None or n > 1:
        pool().set_threads(n)


def get_num_threads() -> int:
    return CONFIG.threads


def stats() -> dict:
    """How threaded kernels ran so far (see Pool.stats); all zero before any ran."""
    if _POOL is None:
        return {"threaded": 0, "alone_busy": 0, "alone_backoff": 0, "contended": 0, "backoff_level": 0}
    return _POOL.stats()


def planned_threads() -> int:
    """The thread count a kernel compiled now plans for."""
    return CONFIG.threads if available() else 1


def symbols() -> dict:
    """Addresses of the runtime's exported symbols (creating the pool and its workers)."""
    p = pool()
    p.ensure_workers(CONFIG.threads - 1)
    return p.symbols

//! A thread pool that stays hot between layers, and [`Par`]: where a kernel may run its
//! tasks.
//!
//! A MobileNetV1 forward is 28 layers of 10 µs to 1 ms each. Waking sleeping threads for
//! every layer (a rayon `install` from outside the pool: a job injected into a global
//! queue, a condition variable on each side) costs about as much as a small depthwise layer
//! does, which is why those layers used to get *slower* on two threads. This pool does what
//! pthreadpool (XNNPACK) and ONNX Runtime's pool do instead:
//!
//! - the caller is participant 0 and runs tasks itself; the workers are participants 1..;
//! - a dispatch is one atomic store (generation and participant count in one word) that
//!   the workers watch;
//! - after a dispatch a worker *spins* on that word for a bounded time
//!   ([`DEFAULT_SPIN`], `KERNELS_POOL_SPIN_US` overrides), so the next layer finds it
//!   awake; only then does it sleep on a condition variable;
//! - tasks are cut into one contiguous share per participant, each with its own atomic
//!   counter: a thread takes its own share first (so it runs the same rows of every layer,
//!   whose input then sits in its own core's cache), then what is left of the others', so
//!   a participant that the noisy host descheduled leaves its share to the others;
//! - a worker *joins* a dispatch before touching it, and the caller closes the dispatch
//!   once it has run out of tasks: it then waits only for the workers that joined, never
//!   for one the host has not even scheduled yet (on a 2-vCPU VM shared with a build,
//!   waiting for such a worker cost a whole scheduler tick, about 1.7 ms, per layer).
//!
//! Each call says how many participants it wants ([`Par::threads`]), so a layer can run on
//! fewer threads than the pool has (the tuned per-layer thread counts).
//!
//! A second thread calling into a pool that is busy (two model sessions sharing one pool)
//! runs its tasks itself, serially, rather than waiting: correct, never blocked. A task
//! that calls back into the pool (nesting) does the same.
//!
//! An application that already runs a rayon pool can give it to [`Par::on_rayon`] (cargo
//! feature `rayon`) so that our layers run on its threads instead of a second set of
//! spinning ones fighting them for the same cores (ONNX Runtime's option to share global
//! thread pools). Each layer is then one `in_place_scope` of `threads - 1` spawned copies
//! of the task loop plus the caller's own; rayon's workers sleep sooner than ours between
//! layers, which the README's measurement puts a price on.

use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{KernelError, Result};

/// How long an idle worker spins before it sleeps. Between the layers of one forward the
/// gap is 1-5 µs. Measured on the Xeon (6/167, 2 vCPUs; `direct` at 2 threads, 5
/// interleaved rounds): 5.67 ms end to end spinning 50 µs, 5.66 ms spinning 1 ms, 6.02 ms
/// not spinning (sleeping at once); and with a build running on the other vCPU, 8.8 ms at
/// 20 µs against 15.8 ms at 1 ms: a worker that spins long spends its share of a contended
/// core spinning and is then descheduled while it holds real work. So: long enough to
/// bridge layers, short enough to yield a shared core.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);

/// Most threads a pool may have (participant counts share a word with the generation).
pub const MAX_THREADS: usize = 1024;

/// Bits of the state word that hold the participant count; the generation is above them.
const COUNT_BITS: u32 = 16;
/// The join word: `generation << 32 | CLOSED | workers joined`.
const CLOSED: u64 = 1 << 31;
const JOINED_MASK: u64 = CLOSED - 1;

thread_local! {
    /// Set on pool workers: a dispatch from inside a task runs serially.
    static IN_WORKER: Cell<bool> = const { Cell::new(false) };
    /// A pool worker's index + 1 (0 on every other thread): which share of a dispatch's
    /// tasks it starts on ([`Par::for_each`]).
    static HOME: Cell<usize> = const { Cell::new(0) };
}

/// A pool of `threads - 1` workers plus the calling thread.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held by the thread dispatching; another caller runs serially instead of waiting.
    caller: Mutex<()>,
}

/// What the caller and the workers share.
struct Shared {
    /// `generation << COUNT_BITS | workers wanted`: one word, so a worker reads a
    /// consistent pair.
    state: AtomicU64,
    /// The job of the current generation; valid for the workers that joined it until
    /// they count themselves in `done`.
    job: AtomicPtr<Job<'static>>,
    /// `generation << 32 | CLOSED | joined`: workers join while the dispatch is open.
    join: AtomicU64,
    /// Workers that joined the current job and finished it.
    done: AtomicUsize,
    /// Workers asleep (or about to be) on `wake`.
    sleeping: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    spin: Duration,
}

/// One dispatch: the loop every participant runs, and whether a worker's copy panicked.
struct Job<'a> {
    body: &'a (dyn Fn() + Sync),
    panicked: AtomicBool,
}

impl ThreadPool {
    /// A pool of `threads` participants (the caller and `threads - 1` workers) whose idle
    /// workers spin for `KERNELS_POOL_SPIN_US` microseconds (default [`DEFAULT_SPIN`]).
    pub fn new(threads: usize) -> Result<ThreadPool> {
        let spin = match std::env::var("KERNELS_POOL_SPIN_US") {
            Ok(v) => Duration::from_micros(v.trim().parse().map_err(|_| {
                KernelError::Threads(format!(
                    "KERNELS_POOL_SPIN_US must be a whole number of microseconds, got {v:?}"
                ))
            })?),
            Err(_) => DEFAULT_SPIN,
        };
        Self::with_spin(threads, spin)
    }

    /// As [`new`](Self::new) with an explicit spin time (zero: sleep at once).
    pub fn with_spin(threads: usize, spin: Duration) -> Result<ThreadPool> {
        if threads == 0 || threads > MAX_THREADS {
            return Err(KernelError::Threads(format!(
                "a pool needs 1..={MAX_THREADS} threads, got {threads}"
            )));
        }
        let shared = Arc::new(Shared {
            state: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            join: AtomicU64::new(CLOSED),
            done: AtomicUsize::new(0),
            sleeping: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            spin,
        });
        let mut workers = Vec::with_capacity(threads - 1);
        for index in 0..threads - 1 {
            let mine = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("kernels-pool-{}", index + 1))
                .spawn(move || worker(&mine, index));
            match spawned {
                Ok(h) => workers.push(h),
                Err(e) => {
                    // Dropping the partial pool stops the workers already started.
                    drop(ThreadPool { shared, workers, caller: Mutex::new(()) });
                    return Err(KernelError::Threads(format!("cannot start {threads} threads: {e}")));
                }
            }
        }
        Ok(ThreadPool { shared, workers, caller: Mutex::new(()) })
    }

    /// The process-wide pool, one participant per core this process may use
    /// (`std::thread::available_parallelism`), started on first use.
    pub fn global() -> &'static ThreadPool {
        static GLOBAL: OnceLock<ThreadPool> = OnceLock::new();
        GLOBAL.get_or_init(|| {
            let n = std::thread::available_parallelism().map_or(1, |n| n.get()).min(MAX_THREADS);
            ThreadPool::new(n)
                .or_else(|_| ThreadPool::with_spin(n, DEFAULT_SPIN))
                .or_else(|_| ThreadPool::with_spin(1, DEFAULT_SPIN))
                .expect("a one-thread pool starts no thread")
        })
    }

    /// Participants: the caller plus the workers.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// How long idle workers spin before sleeping.
    pub fn spin(&self) -> Duration {
        self.shared.spin
    }

    /// Runs `body` on the caller and on `participants - 1` workers at once, returning when
    /// all have finished. `body` shares out its own work (see [`Par::for_each`]). A panic in
    /// any copy is re-raised here after every copy has stopped.
    fn broadcast(&self, participants: usize, body: &(dyn Fn() + Sync)) {
        let wanted = participants.saturating_sub(1).min(self.workers.len());
        if wanted == 0 || IN_WORKER.with(Cell::get) {
            body();
            return;
        }
        let _guard = match self.caller.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            // Busy (another session, or a task of ours calling back in): run it here.
            Err(TryLockError::WouldBlock) => {
                body();
                return;
            }
        };
        let s = &*self.shared;
        let job = Job { body, panicked: AtomicBool::new(false) };
        // SAFETY (lifetime): the pointer is only dereferenced by workers that joined this
        // dispatch, and this function does not return (or unwind) before all of them have
        // counted themselves in `done`.
        let ptr = (&job as *const Job<'_>).cast::<Job<'static>>().cast_mut();
        let generation = (s.state.load(Ordering::Relaxed) >> COUNT_BITS) + 1;
        s.job.store(ptr, Ordering::Relaxed);
        s.done.store(0, Ordering::Relaxed);
        s.join.store((generation & 0xFFFF_FFFF) << 32, Ordering::Release);
        s.state.store(generation << COUNT_BITS | wanted as u64, Ordering::SeqCst);
        if s.sleeping.load(Ordering::SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(body));
        // No task is left to hand out: close the dispatch, then wait for those who joined.
        let joined = (s.join.fetch_or(CLOSED, Ordering::AcqRel) & JOINED_MASK) as usize;
        let mut spins = 0u32;
        while s.done.load(Ordering::Acquire) != joined {
            spins = spins.saturating_add(1);
            if spins < 1 << 12 {
                std::hint::spin_loop();
            } else {
                // A worker was descheduled mid-task: give it the core.
                std::thread::yield_now();
            }
        }
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if job.panicked.load(Ordering::Relaxed) {
            panic!("a task on a kernels pool worker panicked");
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        let s = &*self.shared;
        s.shutdown.store(true, Ordering::SeqCst);
        let generation = (s.state.load(Ordering::Relaxed) >> COUNT_BITS) + 1;
        s.state.store(generation << COUNT_BITS, Ordering::SeqCst);
        {
            let _l = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool").field("threads", &self.threads()).field("spin", &self.spin()).finish()
    }
}

/// A worker's life: wait for a generation, run its copy of the job if it is wanted.
fn worker(s: &Shared, index: usize) {
    IN_WORKER.with(|w| w.set(true));
    HOME.with(|h| h.set(index + 1));
    let mut seen = 0u64;
    loop {
        let state = wait_for_next(s, seen);
        seen = state >> COUNT_BITS;
        if s.shutdown.load(Ordering::SeqCst) {
            return;
        }
        let wanted = (state & ((1 << COUNT_BITS) - 1)) as usize;
        if index >= wanted || !try_join(s, seen) {
            continue;
        }
        // SAFETY: we joined, so the caller keeps the job alive until our `done` below; the
        // pointer was stored before the join word we read (Release / Acquire).
        let job = unsafe { &*s.job.load(Ordering::Relaxed) };
        if catch_unwind(AssertUnwindSafe(job.body)).is_err() {
            job.panicked.store(true, Ordering::Relaxed);
        }
        s.done.fetch_add(1, Ordering::Release);
    }
}

/// Joins dispatch `generation` if it is still open.
fn try_join(s: &Shared, generation: u64) -> bool {
    let mut j = s.join.load(Ordering::Acquire);
    loop {
        if j >> 32 != generation & 0xFFFF_FFFF || j & CLOSED != 0 {
            return false;
        }
        match s.join.compare_exchange_weak(j, j + 1, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return true,
            Err(now) => j = now,
        }
    }
}

/// Spins (bounded by `s.spin`), then sleeps, until the generation differs from `seen`.
fn wait_for_next(s: &Shared, seen: u64) -> u64 {
    let start = Instant::now();
    let mut i = 0u32;
    loop {
        let state = s.state.load(Ordering::Acquire);
        if state >> COUNT_BITS != seen {
            return state;
        }
        std::hint::spin_loop();
        i = i.wrapping_add(1);
        // Reading the clock costs ~20 ns: look every 256 pauses (a few µs).
        if i.is_multiple_of(256) && start.elapsed() >= s.spin {
            break;
        }
    }
    let mut guard = s.lock.lock().unwrap_or_else(|p| p.into_inner());
    s.sleeping.fetch_add(1, Ordering::SeqCst);
    // The dispatcher bumps the state, then reads `sleeping` (both SeqCst), so either we see
    // its state here or it sees us asleep and notifies under the lock.
    loop {
        let state = s.state.load(Ordering::SeqCst);
        if state >> COUNT_BITS != seen {
            s.sleeping.fetch_sub(1, Ordering::SeqCst);
            return state;
        }
        guard = s.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
    }
}

/// Where a kernel call may run its tasks: a pool and how many of its participants this
/// call may use. `Copy`, so it is passed by value down a layer's call tree.
#[derive(Clone, Copy, Debug)]
pub struct Par<'a> {
    pool: Backend<'a>,
    threads: usize,
}

/// The threads behind a [`Par`].
#[derive(Clone, Copy, Debug)]
enum Backend<'a> {
    Serial,
    /// Our pool: hot workers, one atomic dispatch.
    Spin(&'a ThreadPool),
    /// The application's rayon pool.
    #[cfg(feature = "rayon")]
    Rayon(&'a rayon::ThreadPool),
}

impl Par<'static> {
    /// Everything on the calling thread.
    pub const SERIAL: Par<'static> = Par { pool: Backend::Serial, threads: 1 };

    /// Up to `threads` participants of the [global](ThreadPool::global) pool (1: serial,
    /// the pool is not even started).
    pub fn global(threads: usize) -> Par<'static> {
        if threads <= 1 {
            return Par::SERIAL;
        }
        Par::on(ThreadPool::global(), threads)
    }
}

impl<'a> Par<'a> {
    /// Up to `threads` participants of `pool` (clamped to `1..=pool.threads()`).
    pub fn on(pool: &'a ThreadPool, threads: usize) -> Par<'a> {
        Par { pool: Backend::Spin(pool), threads: threads.clamp(1, pool.threads()) }
    }

    /// Up to `threads` threads of an application's rayon `pool` (clamped to
    /// `1..=pool.current_num_threads()`): the calling thread runs one copy of each layer's
    /// task loop, and `threads - 1` copies are spawned on the pool.
    #[cfg(feature = "rayon")]
    pub fn on_rayon(pool: &'a rayon::ThreadPool, threads: usize) -> Par<'a> {
        Par { pool: Backend::Rayon(pool), threads: threads.clamp(1, pool.current_num_threads().max(1)) }
    }

    /// How many threads this call may use.
    pub fn threads(self) -> usize {
        self.threads
    }

    /// The same pool with at most `threads` participants.
    pub fn limit(self, threads: usize) -> Par<'a> {
        Par { threads: threads.clamp(1, self.threads), ..self }
    }

    /// Runs `task(0)`, ..., `task(n - 1)`, each exactly once, on up to `self.threads()`
    /// threads (never more than `n`), and returns when all have run.
    ///
    /// On our pool the tasks are cut into one contiguous share per participant, each with
    /// its own atomic counter: a thread first takes the tasks of its own share in order
    /// (the caller the first share, worker `i` share `i + 1`), then what is left of the
    /// others'. So the same thread runs the same rows of consecutive layers, and a layer
    /// reads what the one before it wrote from its own core's cache, while a descheduled
    /// thread's share is still taken by the others. With one counter for all, which thread
    /// ran which rows was a race, and a layer read half its input from the other core:
    /// at 2 threads the 14 x 14 and 7 x 7 f32 depthwise layers ran 1.5-4x *slower* than at
    /// 1 (dw12 0.012 -> 0.046 ms, Xeon family 6 model 167).
    pub fn for_each(self, n: usize, task: impl Fn(usize) + Sync) {
        let participants = self.threads.min(n);
        if participants <= 1 {
            return (0..n).for_each(task);
        }
        if let Backend::Spin(pool) = self.pool {
            let start = |share: usize| share * n / participants;
            let next: Vec<Counter> = (0..participants).map(|p| Counter(AtomicUsize::new(start(p)))).collect();
            let body = || {
                let home = HOME.with(Cell::get) % participants;
                for share in (0..participants).map(|k| (home + k) % participants) {
                    let end = start(share + 1);
                    loop {
                        let i = next[share].0.fetch_add(1, Ordering::Relaxed);
                        if i >= end {
                            break;
                        }
                        task(i);
                    }
                }
            };
            return pool.broadcast(participants, &body);
        }
        let next = AtomicUsize::new(0);
        let body = || loop {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            task(i);
        };
        match self.pool {
            Backend::Serial | Backend::Spin(_) => body(),
            #[cfg(feature = "rayon")]
            Backend::Rayon(pool) => pool.in_place_scope(|scope| {
                let body = &body;
                for _ in 1..participants {
                    scope.spawn(move |_| body());
                }
                body();
            }),
        }
    }

    /// Splits `data`, whole rows of `row_len` elements, into `tasks` runs of consecutive
    /// rows whose lengths differ by at most one row, and runs `task(first_row, run)` on
    /// each, as [`for_each`](Self::for_each) does. Balanced runs, because each thread takes
    /// a contiguous share of them: 14 rows in 4 runs are 4, 3, 4, 3, so each of 2 threads
    /// computes 7, where runs of `ceil(14 / 4) = 4` rows gave one thread 8 and the other 6.
    /// The longer runs come first, so where the shares cannot be equal the caller's (the
    /// first, see `for_each`) is the longer one, not a worker's that may wake late: 7 rows
    /// are 2, 2, 2, 1 (with 1, 2, 2, 2, dw12 and dw13 at 2 threads ran 1.11 and 1.06x
    /// slower on the Zen 5).
    pub fn for_each_rows_mut<T: Send>(
        self,
        data: &mut [T],
        row_len: usize,
        tasks: usize,
        task: impl Fn(usize, &mut [T]) + Sync,
    ) {
        let rows = data.len().checked_div(row_len).unwrap_or(0);
        let tasks = tasks.clamp(1, rows.max(1));
        let base = SharedOut(data.as_mut_ptr());
        self.for_each(tasks, |t| {
            let (r0, r1) = ((rows * t).div_ceil(tasks), (rows * (t + 1)).div_ceil(tasks));
            // SAFETY: run `t` is rows `r0..r1` (`r1 <= rows`), inside `data`, and every
            // index runs once, so the runs handed out are disjoint.
            let part =
                unsafe { std::slice::from_raw_parts_mut(base.get().add(r0 * row_len), (r1 - r0) * row_len) };
            task(r0, part);
        });
    }

    /// Splits `data` into chunks of `chunk` elements (the last may be shorter) and runs
    /// `task(i, chunk_i)` on each, as [`for_each`](Self::for_each) does.
    pub fn for_each_chunk_mut<T: Send>(
        self,
        data: &mut [T],
        chunk: usize,
        task: impl Fn(usize, &mut [T]) + Sync,
    ) {
        let (len, chunk) = (data.len(), chunk.max(1));
        let base = SharedOut(data.as_mut_ptr());
        self.for_each(len.div_ceil(chunk), |i| {
            let start = i * chunk;
            // SAFETY: chunk `i` is `[start, min(start + chunk, len))`, inside `data`, and
            // every index runs once, so the chunks handed out are disjoint.
            let part =
                unsafe { std::slice::from_raw_parts_mut(base.get().add(start), chunk.min(len - start)) };
            task(i, part);
        });
    }
}

/// One share's task counter, on its own cache line (its owner increments it for every task).
#[repr(align(64))]
struct Counter(AtomicUsize);

/// A raw pointer shared by tasks that write disjoint parts of what it points to (or only
/// read it).
pub(crate) struct SharedOut<T>(pub *mut T);
impl<T> SharedOut<T> {
    /// The pointer (a method, so that closures capture the whole `SharedOut`, which is
    /// `Sync`, not its raw field).
    pub(crate) fn get(&self) -> *mut T {
        self.0
    }
}
impl<T> Clone for SharedOut<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SharedOut<T> {}
// SAFETY: the tasks sharing one write disjoint parts (each user says why), so sharing the
// base pointer across threads creates no data race.
unsafe impl<T: Send> Send for SharedOut<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for SharedOut<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every task of `for_each` runs exactly once, for 1..=4 threads and task counts
    /// around the participant counts, on the `Par` that `on(threads)` gives.
    fn assert_every_task_runs_once<'a>(on: impl Fn(usize) -> Par<'a>) {
        for threads in 1..=4 {
            for n in [0, 1, 2, 3, 5, 7, 100] {
                let hits: Vec<AtomicUsize> = (0..n).map(|_| AtomicUsize::new(0)).collect();
                on(threads).for_each(n, |i| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "t{threads} n{n}");
            }
        }
    }

    #[test]
    fn every_task_runs_once_at_every_participant_count() {
        for spin_us in [0, 50] {
            let pool = ThreadPool::with_spin(3, Duration::from_micros(spin_us)).unwrap();
            assert_every_task_runs_once(|threads| Par::on(&pool, threads));
        }
    }

    /// Each thread starts on its own share (the caller the first half, the worker the
    /// second), so consecutive layers split the same way run their rows on the same
    /// threads. Each task takes 2 ms, so a thread would have to start 64 ms late for the
    /// other to reach its first task.
    #[test]
    fn each_thread_starts_on_its_own_share() {
        let pool = ThreadPool::with_spin(2, DEFAULT_SPIN).unwrap();
        let caller = std::thread::current().id();
        let ran_here: Vec<AtomicBool> = (0..64).map(|_| AtomicBool::new(false)).collect();
        Par::on(&pool, 2).for_each(64, |i| {
            ran_here[i].store(std::thread::current().id() == caller, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(2));
        });
        assert!(ran_here[0].load(Ordering::Relaxed), "task 0 ran on the worker");
        assert!(!ran_here[32].load(Ordering::Relaxed), "task 32 ran on the caller");
    }

    /// `for_each_rows_mut` hands out every row once, at the row index it passes, in runs
    /// whose lengths differ by at most one row (the 14-row layers at 2 threads: 7 + 7).
    #[test]
    fn row_runs_cover_every_row_once_and_are_balanced() {
        let pool = ThreadPool::with_spin(2, DEFAULT_SPIN).unwrap();
        for (rows, row_len, tasks) in
            [(14, 3, 4), (7, 2, 4), (1, 5, 4), (3, 1, 8), (100, 4, 6), (0, 3, 4), (5, 0, 2)]
        {
            let mut data = vec![usize::MAX; rows * row_len];
            let lens = std::sync::Mutex::new(Vec::new());
            Par::on(&pool, 2).for_each_rows_mut(&mut data, row_len, tasks, |first, run| {
                assert_eq!(run.len() % row_len.max(1), 0, "whole rows");
                for (i, x) in run.iter_mut().enumerate() {
                    *x = first + i / row_len;
                }
                lens.lock().unwrap().push(run.len() / row_len.max(1));
            });
            let want: Vec<usize> = (0..rows).flat_map(|r| std::iter::repeat_n(r, row_len)).collect();
            assert_eq!(data, want, "rows {rows} x {row_len}, {tasks} tasks");
            let lens = lens.into_inner().unwrap();
            let (lo, hi) = (lens.iter().min().copied().unwrap_or(0), lens.iter().max().copied().unwrap_or(0));
            assert!(hi - lo <= 1, "runs {lens:?} of {rows} rows");
        }
    }

    #[test]
    fn sleeping_workers_wake_up() {
        let pool = ThreadPool::with_spin(2, Duration::ZERO).unwrap();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_micros(200));
            let sum = AtomicUsize::new(0);
            Par::on(&pool, 2).for_each(64, |i| {
                sum.fetch_add(i, Ordering::Relaxed);
            });
            assert_eq!(sum.load(Ordering::Relaxed), 63 * 64 / 2);
        }
    }

    #[test]
    fn nested_and_concurrent_calls_run_serially_and_complete() {
        let pool = Arc::new(ThreadPool::with_spin(2, Duration::from_micros(100)).unwrap());
        let total = AtomicUsize::new(0);
        Par::on(&pool, 2).for_each(4, |_| {
            Par::on(&pool, 2).for_each(4, |_| {
                total.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(total.load(Ordering::Relaxed), 16);
        let handles: Vec<_> = (0..3)
            .map(|_| {
                let pool = Arc::clone(&pool);
                std::thread::spawn(move || {
                    let sum = AtomicUsize::new(0);
                    for _ in 0..200 {
                        Par::on(&pool, 2).for_each(10, |i| {
                            sum.fetch_add(i, Ordering::Relaxed);
                        });
                    }
                    sum.load(Ordering::Relaxed)
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), 200 * 45);
        }
    }

    #[test]
    fn a_panicking_task_is_reraised_and_the_pool_survives() {
        let pool = ThreadPool::with_spin(2, Duration::from_micros(10)).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            Par::on(&pool, 2).for_each(8, |i| assert!(i != 5, "task five"));
        }));
        assert!(r.is_err());
        let sum = AtomicUsize::new(0);
        Par::on(&pool, 2).for_each(8, |i| {
            sum.fetch_add(i, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 28);
    }

    #[cfg(feature = "rayon")]
    #[test]
    fn a_rayon_pool_runs_every_task_once_and_reraises_panics() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
        assert_every_task_runs_once(|threads| Par::on_rayon(&pool, threads));
        // From inside the pool (an application calling us from one of its tasks), nested.
        let total = AtomicUsize::new(0);
        pool.install(|| {
            Par::on_rayon(&pool, 3).for_each(4, |_| {
                Par::on_rayon(&pool, 3).for_each(4, |_| {
                    total.fetch_add(1, Ordering::Relaxed);
                });
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 16);
        assert_eq!(Par::on_rayon(&pool, 9).threads(), 3);
        let r = catch_unwind(AssertUnwindSafe(|| {
            Par::on_rayon(&pool, 3).for_each(8, |i| assert!(i != 5, "task five"));
        }));
        assert!(r.is_err());
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(ThreadPool::new(0).is_err());
        assert!(ThreadPool::new(MAX_THREADS + 1).is_err());
        let pool = ThreadPool::new(2).unwrap();
        assert_eq!(Par::on(&pool, 0).threads(), 1);
        assert_eq!(Par::on(&pool, 9).threads(), 2);
        assert_eq!(Par::on(&pool, 2).limit(1).threads(), 1);
    }
}

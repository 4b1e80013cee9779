//! Loopback ports for the processes the tests start, handed out so that no two starts get the
//! same one.
//!
//! Asking the kernel for a free port (binding port 0) and letting it go leaves a window in which
//! anyone may take it: the kernel hands the same ports out to every other port-0 bind and
//! outgoing connection on the machine. A [`Port`] is therefore taken from outside the kernel's
//! ephemeral range, where the kernel never hands ports out by itself, and is held for as long
//! as its owner lives by a lock that every test process on the machine respects: an abstract
//! Unix socket named after the port (released by the kernel when the holder exits, even killed).
//! What is left, a process outside the tests binding that very number in the window between
//! the check here and the child's own bind, is what [`start_with_free_ports`] retries.

use std::net::TcpListener;
use std::ops::RangeInclusive;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// Starts tried before giving up, each on ports no start tried before.
const START_ATTEMPTS: u32 = 5;
/// Where the reserved ranges begin: above the well-known ports of services the tests use.
const FIRST_PORT: u16 = 20_000;
/// A gap outside the ephemeral range narrower than this is not used.
const SMALLEST_RANGE: u16 = 1_000;

/// A loopback port reserved for its owner: no other [`Port::reserve`] on the machine hands it
/// out until this is dropped, and the kernel does not give it to port-0 binds.
#[derive(Debug)]
pub struct Port {
    number: u16,
    _lock: UnixDatagram,
}

impl Port {
    /// The next port in the reserved range that no one holds or listens on.
    pub fn reserve() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let range = reserved_range();
        let first = usize::from(*range.start());
        let count = usize::from(*range.end()) - first + 1;
        // Each test process starts at its own place in the range, so that two runs rarely
        // try the same ports; the locks keep them apart where they do.
        let offset = std::process::id() as usize * 97;
        for _ in 0..count {
            let index = (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % count;
            let number = u16::try_from(first + index).expect("the range holds u16 ports");
            if let Some(lock) = lock(number) {
                if TcpListener::bind(("127.0.0.1", number)).is_ok() {
                    return Self {
                        number,
                        _lock: lock,
                    };
                }
            }
        }
        panic!("every port in {range:?} is taken");
    }

    pub fn number(&self) -> u16 {
        self.number
    }
}

/// Why a start failed in a way that a start on other ports can fix: one of its ports turned
/// out to be in use.
#[derive(Debug)]
pub struct PortTaken {
    /// The line that says so (from the child's log, as a rule).
    pub line: String,
}

impl PortTaken {
    /// The `PortTaken` a child's log tells of, if any.
    pub fn in_log(log: &str) -> Option<Self> {
        log.lines()
            .find(|line| line.contains("in use"))
            .map(|line| Self {
                line: line.to_owned(),
            })
    }
}

/// Panics if a restart on ports its process kept reserved found one taken anyway (by a process
/// outside the tests: no reservation hands it out, and the kernel does not pick it).
pub fn restarted(what: &str, restart: Result<(), PortTaken>) {
    if let Err(taken) = restart {
        panic!("{what}: a port it kept is taken: {}", taken.line);
    }
}

/// Runs `start` with `N` freshly reserved ports; while it fails because a port was taken, runs
/// it again with new ones (a bounded number of times). `start` keeps the [`Port`]s it was
/// given for as long as its processes may listen on them.
pub fn start_with_free_ports<const N: usize, T>(
    what: &str,
    mut start: impl FnMut([Port; N]) -> Result<T, PortTaken>,
) -> T {
    let mut last = None;
    for attempt in 1..=START_ATTEMPTS {
        match start(std::array::from_fn(|_| Port::reserve())) {
            Ok(started) => return started,
            Err(taken) => {
                eprintln!(
                    "{what}: a port was taken (attempt {attempt} of {START_ATTEMPTS}): {}",
                    taken.line
                );
                last = Some(taken);
            }
        }
    }
    panic!("{what} found a port taken on every one of {START_ATTEMPTS} starts: {last:?}");
}

/// Holds the machine-wide lock on `port`, or `None` when someone else holds it.
fn lock(port: u16) -> Option<UnixDatagram> {
    let name = format!("tollgate-e2e-port-{port}");
    let address = SocketAddr::from_abstract_name(name.as_bytes()).ok()?;
    UnixDatagram::bind_addr(&address).ok()
}

/// Ports the kernel never picks by itself: below its ephemeral range if that leaves room,
/// else above it.
fn reserved_range() -> RangeInclusive<u16> {
    static RANGE: OnceLock<RangeInclusive<u16>> = OnceLock::new();
    RANGE
        .get_or_init(|| {
            let (low, high) = ephemeral_range().unwrap_or((32_768, 60_999));
            if low.saturating_sub(FIRST_PORT) >= SMALLEST_RANGE {
                FIRST_PORT..=low - 1
            } else if u16::MAX - high.max(FIRST_PORT) >= SMALLEST_RANGE {
                high.max(FIRST_PORT) + 1..=u16::MAX
            } else {
                // No room outside it: the locks still keep test processes apart, and
                // `start_with_free_ports` retries a port the kernel gave away meanwhile.
                FIRST_PORT..=u16::MAX
            }
        })
        .clone()
}

/// The kernel's range for port-0 binds and outgoing connections.
fn ephemeral_range() -> Option<(u16, u16)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut bounds = text.split_whitespace().map(|n| n.parse::<u16>().ok());
    Some((bounds.next()??, bounds.next()??))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_port_is_not_handed_out_again_and_lies_outside_the_ephemeral_range() {
        let held: Vec<Port> = (0..20).map(|_| Port::reserve()).collect();
        let mut numbers: Vec<u16> = held.iter().map(Port::number).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), held.len(), "a port was handed out twice");
        if let Some((low, high)) = ephemeral_range() {
            let outside = reserved_range();
            if *outside.start() > high || *outside.end() < low {
                assert!(
                    numbers.iter().all(|n| *n < low || *n > high),
                    "{numbers:?} overlaps the ephemeral {low}-{high}"
                );
            }
        }
        for port in &held {
            assert!(
                lock(port.number()).is_none(),
                "{} can be locked twice",
                port.number()
            );
        }
    }

    #[test]
    fn a_start_that_finds_a_port_taken_is_made_again_on_fresh_ports() {
        let mut tried = Vec::new();
        let started = start_with_free_ports("twice", |[port]: [Port; 1]| {
            tried.push(port.number());
            if tried.len() < 2 {
                return Err(PortTaken {
                    line: "Address already in use".to_owned(),
                });
            }
            Ok(port)
        });
        assert_eq!(tried.len(), 2);
        assert_ne!(
            tried[0], tried[1],
            "the second start got the first one's port"
        );
        assert_eq!(started.number(), tried[1]);
    }

    #[test]
    fn a_log_that_says_a_port_is_in_use_is_a_port_taken() {
        let log = "starting\ncannot bind '127.0.0.1:20001': Address already in use\n";
        let taken = PortTaken::in_log(log).expect("a PortTaken");
        assert!(taken.line.contains("20001"), "{}", taken.line);
        assert!(PortTaken::in_log("starting\nexiting: bad configuration").is_none());
    }
}

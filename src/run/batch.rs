//! The driver's socket calls, batched where the platform can: on Linux and
//! Android one `recvmmsg(2)` reads up to [`BATCH`] datagrams and one
//! `sendmmsg(2)` sends up to [`BATCH`]; elsewhere each call moves one
//! datagram (`recv_from`, `send_to`), with the same results.
//!
//! Why `libc` rather than a crate (`quinn-udp`): `quinn-udp` batches
//! receives, but sends one destination per call (its batching is GSO,
//! segments of one flow), while a server's replies each go to another
//! client: `sendmmsg` is the half that matters for it, and the whole is a
//! few dozen lines over `libc`, already a dependency.

use std::io;
use std::net::SocketAddr;

use super::RECV_BUFFER;
use crate::Transmit;

/// The most datagrams one system call reads or sends.
pub const BATCH: usize = 32;

/// Whether a receive that returns fewer datagrams than asked for has seen
/// the socket empty. `recvmmsg` stops early only at an empty queue (or an
/// error, which it keeps for the next call and which readiness reports), so
/// the driver need not make one more call to see `WouldBlock`: datagrams that
/// arrive later raise a new readiness event. The one-at-a-time fallback
/// never stops early.
pub(super) const SHORT_MEANS_EMPTY: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Receive buffers for one batch: [`BATCH`] slots of [`RECV_BUFFER`] bytes,
/// and where each datagram read came from.
pub(super) struct RecvBatch {
    bufs: Box<[u8]>,
    /// Per datagram read: its length and its source (canonical; `None` for
    /// an address family a UDP socket should never report).
    got: Vec<(usize, Option<SocketAddr>)>,
    #[cfg(any(target_os = "linux", target_os = "android"))]
    names: Box<[libc::sockaddr_storage]>,
}

impl RecvBatch {
    /// Empty buffers.
    pub(super) fn new() -> RecvBatch {
        RecvBatch {
            bufs: vec![0; BATCH * RECV_BUFFER].into_boxed_slice(),
            got: Vec::with_capacity(BATCH),
            #[cfg(any(target_os = "linux", target_os = "android"))]
            // SAFETY: `sockaddr_storage` is plain data; all zeroes is a valid
            // (unspecified) value.
            names: (0..BATCH)
                .map(|_| unsafe { std::mem::zeroed::<libc::sockaddr_storage>() })
                .collect(),
        }
    }

    /// Datagram `i` of the last [`RecvBatch::recv`]: its canonical source
    /// (`None` if unreadable) and bytes (at most [`RECV_BUFFER`]).
    pub(super) fn get(&self, i: usize) -> Option<(Option<SocketAddr>, &[u8])> {
        let &(len, from) = self.got.get(i)?;
        let slot = self.bufs.get(i * RECV_BUFFER..(i + 1) * RECV_BUFFER)?;
        Some((from, slot.get(..len).unwrap_or(slot)))
    }

    /// Reads at least one and at most `max` (capped at [`BATCH`]) datagrams
    /// from the non-blocking `socket`; how many. `WouldBlock` when there was
    /// none. One system call; where the platform has no `recvmmsg`, one
    /// datagram.
    pub(super) fn recv(&mut self, socket: &mio::net::UdpSocket, max: usize) -> io::Result<usize> {
        #[cfg(any(target_os = "linux", target_os = "android"))]
        return self.recv_mmsg(socket, max);
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        return self.recv_one(socket, max);
    }

    /// [`RecvBatch::recv`] with `recvmmsg`.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn recv_mmsg(&mut self, socket: &mio::net::UdpSocket, max: usize) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        let n = max.clamp(1, BATCH);
        self.got.clear();
        // SAFETY: all zeroes is a valid `iovec` and `mmsghdr` (null
        // pointers, zero lengths); every one used is filled in below.
        let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
        let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
        let name_len = socklen_of::<libc::sockaddr_storage>();
        for ((iov, header), (slot, name)) in iovecs
            .iter_mut()
            .zip(headers.iter_mut())
            .zip(
                self.bufs
                    .chunks_exact_mut(RECV_BUFFER)
                    .zip(self.names.iter_mut()),
            )
            .take(n)
        {
            iov.iov_base = slot.as_mut_ptr().cast();
            iov.iov_len = slot.len();
            header.msg_hdr.msg_name = std::ptr::from_mut(name).cast();
            header.msg_hdr.msg_namelen = name_len;
            header.msg_hdr.msg_iov = iov;
            header.msg_hdr.msg_iovlen = 1;
        }
        let count = libc::c_uint::try_from(n).unwrap_or(1);
        // SAFETY: the first `n` headers point to `n` distinct slots of
        // `RECV_BUFFER` writable bytes and `n` distinct address buffers of
        // `name_len` bytes, all owned by `self` and the stack for the call.
        let got = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                headers.as_mut_ptr(),
                count,
                0,
                std::ptr::null_mut(),
            )
        };
        // Negative (an error) fails the conversion.
        let Ok(got) = usize::try_from(got) else {
            return Err(io::Error::last_os_error());
        };
        if got == 0 {
            // Not for UDP; seen as nothing to read.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        for (header, name) in headers.iter().zip(self.names.iter()).take(got) {
            // Without MSG_TRUNC the length is what was copied: at most the slot.
            let len = usize::try_from(header.msg_len)
                .unwrap_or(RECV_BUFFER)
                .min(RECV_BUFFER);
            self.got
                .push((len, socket_addr(name, header.msg_hdr.msg_namelen)));
        }
        Ok(got)
    }

    /// [`RecvBatch::recv`] one datagram at a time, with `recv_from` (the
    /// portable fallback; `max` is ignored). Built everywhere, so that
    /// Linux tests run it too.
    #[cfg_attr(
        all(not(test), any(target_os = "linux", target_os = "android")),
        allow(dead_code)
    )]
    fn recv_one(&mut self, socket: &mio::net::UdpSocket, _max: usize) -> io::Result<usize> {
        self.got.clear();
        let slot = self.bufs.get_mut(..RECV_BUFFER).unwrap_or_default();
        let (len, from) = socket.recv_from(slot)?;
        // `recv_from` never reports more than the buffer holds.
        self.got
            .push((len.min(RECV_BUFFER), Some(super::canonical(from))));
        Ok(1)
    }
}

/// The size of `T` as a socket address length.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn socklen_of<T>() -> libc::socklen_t {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).unwrap_or(libc::socklen_t::MAX)
}

/// The address in `storage` (of which the kernel filled `len` bytes) in
/// canonical form: IPv4-mapped IPv6 as plain IPv4 (see
/// [`canonical`](super::canonical)). `None` for other families.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn socket_addr(storage: &libc::sockaddr_storage, len: libc::socklen_t) -> Option<SocketAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= socklen_of::<libc::sockaddr_in>() => {
            // SAFETY: `sockaddr_storage` is large and aligned enough for
            // any address, and the kernel wrote an AF_INET one.
            let v4 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                u16::from_be(v4.sin_port),
            )))
        }
        libc::AF_INET6 if len >= socklen_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for an AF_INET6 address.
            let v6 = unsafe { &*std::ptr::from_ref(storage).cast::<libc::sockaddr_in6>() };
            let ip = Ipv6Addr::from(v6.sin6_addr.s6_addr);
            let port = u16::from_be(v6.sin6_port);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(
                    ip,
                    port,
                    u32::from_be(v6.sin6_flowinfo),
                    v6.sin6_scope_id,
                )),
            })
        }
        _ => None,
    }
}

/// Sends `datagrams` (each a destination as the socket takes it, and the
/// transmit it is for) in order from the non-blocking `socket`, as many as
/// one system call can (`sendmmsg`; one where the platform has none): how
/// many were sent, at least one. An error is the first datagram's: the
/// caller counts it and goes on with the rest (or, for `WouldBlock`,
/// waits).
pub(super) fn send(
    socket: &mio::net::UdpSocket,
    datagrams: &[(socket2::SockAddr, Transmit)],
) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    return send_mmsg(socket, datagrams);
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    return send_one(socket, datagrams);
}

/// [`send`] with `sendmmsg`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send_mmsg(
    socket: &mio::net::UdpSocket,
    datagrams: &[(socket2::SockAddr, Transmit)],
) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let n = datagrams.len().min(BATCH);
    if n == 0 {
        return Ok(0);
    }
    // SAFETY: all zeroes is a valid `iovec` and `mmsghdr`; every one used
    // is filled in below.
    let mut iovecs: [libc::iovec; BATCH] = unsafe { std::mem::zeroed() };
    let mut headers: [libc::mmsghdr; BATCH] = unsafe { std::mem::zeroed() };
    for ((iov, header), (to, transmit)) in iovecs
        .iter_mut()
        .zip(headers.iter_mut())
        .zip(datagrams)
        .take(n)
    {
        let payload = &transmit.payload;
        // The kernel only reads through these two pointers.
        iov.iov_base = payload.as_ptr().cast_mut().cast();
        iov.iov_len = payload.len();
        header.msg_hdr.msg_name = to.as_ptr().cast_mut().cast();
        header.msg_hdr.msg_namelen = to.len();
        header.msg_hdr.msg_iov = iov;
        header.msg_hdr.msg_iovlen = 1;
    }
    let count = libc::c_uint::try_from(n).unwrap_or(1);
    // SAFETY: the first `n` headers point to `n` payloads and addresses
    // borrowed from `datagrams` for the call, with their true lengths.
    let sent = unsafe { libc::sendmmsg(socket.as_raw_fd(), headers.as_mut_ptr(), count, 0) };
    match usize::try_from(sent) {
        Ok(0) => Err(io::ErrorKind::WouldBlock.into()),
        Ok(sent) => Ok(sent),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

/// [`send`] one datagram at a time, with `send_to` (the portable
/// fallback): 1, or the first datagram's error. Built everywhere, so that
/// Linux tests run it too.
#[cfg_attr(
    all(not(test), any(target_os = "linux", target_os = "android")),
    allow(dead_code)
)]
fn send_one(
    socket: &mio::net::UdpSocket,
    datagrams: &[(socket2::SockAddr, Transmit)],
) -> io::Result<usize> {
    let Some((to, transmit)) = datagrams.first() else {
        return Ok(0);
    };
    socket2::SockRef::from(socket).send_to(&transmit.payload, to)?;
    Ok(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// A non-blocking mio socket on loopback and a plain peer.
    fn pair() -> (mio::net::UdpSocket, UdpSocket) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_nonblocking(true).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        (mio::net::UdpSocket::from_std(socket), peer)
    }

    /// A read as the driver may make it.
    type Read = fn(&mut RecvBatch, &mio::net::UdpSocket, usize) -> io::Result<usize>;

    /// Reads everything queued with `read`, one call at a time.
    fn read_all(socket: &mio::net::UdpSocket, read: Read) -> Vec<(SocketAddr, Vec<u8>)> {
        let mut batch = RecvBatch::new();
        let mut all = Vec::new();
        loop {
            match read(&mut batch, socket, BATCH) {
                Ok(n) => {
                    for i in 0..n {
                        let (from, datagram) = batch.get(i).unwrap();
                        all.push((from.unwrap(), datagram.to_vec()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return all,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// The reads the driver may use: the batched one and the fallback.
    const READS: [(&str, Read); 2] = [("recv", RecvBatch::recv), ("recv_one", RecvBatch::recv_one)];

    #[test]
    fn both_reads_give_every_datagram_in_order_with_its_source() {
        for (name, read) in READS {
            let (socket, peer) = pair();
            let to = socket.local_addr().unwrap();
            let mut want = Vec::new();
            for i in 0..BATCH + 3 {
                let datagram = vec![u8::try_from(i).unwrap(); 1 + i * 60];
                peer.send_to(&datagram, to).unwrap();
                want.push((peer.local_addr().unwrap(), datagram));
            }
            std::thread::sleep(Duration::from_millis(20));
            let got = read_all(&socket, read);
            assert_eq!(got.len(), want.len(), "{name}");
            assert!(got == want, "{name}: not the datagrams sent");
        }
    }

    #[test]
    fn both_sends_send_in_order_and_report_the_first_failure() {
        type Send = fn(&mio::net::UdpSocket, &[(socket2::SockAddr, Transmit)]) -> io::Result<usize>;
        let sends: [(&str, Send); 2] = [("send", send), ("send_one", send_one)];
        for (name, send) in sends {
            let (socket, peer) = pair();
            let good = peer.local_addr().unwrap();
            let bad: SocketAddr = "[2001:db8::1]:9".parse().unwrap();
            let out: Vec<(socket2::SockAddr, Transmit)> = [good, good, bad, good]
                .into_iter()
                .zip(1u8..)
                .map(|(to, byte)| {
                    let transmit = Transmit {
                        destination: to,
                        payload: Bytes::from(vec![byte; 2]),
                    };
                    (to.into(), transmit)
                })
                .collect();
            let mut next = 0;
            let mut outcomes = Vec::new();
            while next < out.len() {
                match send(&socket, &out[next..]) {
                    Ok(n) => {
                        assert!(n >= 1, "{name}");
                        outcomes.extend(std::iter::repeat_n(true, n));
                        next += n;
                    }
                    Err(_) => {
                        outcomes.push(false);
                        next += 1;
                    }
                }
            }
            assert_eq!(outcomes, [true, true, false, true], "{name}");
            let mut buf = [0; 4];
            for byte in [1u8, 2, 4] {
                let (n, _) = peer.recv_from(&mut buf).unwrap();
                assert_eq!(&buf[..n], &[byte; 2], "{name}");
            }
        }
    }

    #[test]
    fn an_empty_socket_is_would_block_for_both_reads() {
        for (name, read) in READS {
            let (socket, _peer) = pair();
            let err = read(&mut RecvBatch::new(), &socket, BATCH).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::WouldBlock, "{name}");
        }
    }
}

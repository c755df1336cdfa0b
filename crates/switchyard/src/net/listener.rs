//! Binding listening sockets: one SO_REUSEPORT socket per reactor thread and address, so the
//! kernel spreads new connections over the threads and no accept lock is shared.

use std::io;
use std::net::{SocketAddr, TcpListener, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Listen backlog: generous, so a burst of connects is queued rather than refused.
const BACKLOG: i32 = 4096;

/// Binds `count` sockets to `addr` with SO_REUSEPORT. When `addr` has port 0 the first socket
/// picks a port and the others bind to the same one.
pub fn bind_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<TcpListener>> {
    bind_reuseport_unlistened(addr, count)?
        .into_iter()
        .map(|s| {
            listen(&s)?;
            Ok(s.into())
        })
        .collect()
}

/// Binds like [`bind_reuseport`] but does not listen yet: the address is held (and a conflict
/// reported) while the sockets take no connection, so dropping them resets none, even when
/// they share the address with listening SO_REUSEPORT sockets. [`listen`] makes each a
/// listener.
pub fn bind_reuseport_unlistened(addr: SocketAddr, count: usize) -> io::Result<Vec<Socket>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        socket.bind(&addr.into())?;
        if let Some(bound) = socket.local_addr()?.as_socket() {
            addr = bound;
        }
        out.push(socket);
    }
    Ok(out)
}

/// Starts listening on a socket [`bind_reuseport_unlistened`] bound.
pub fn listen(socket: &Socket) -> io::Result<()> {
    socket.listen(BACKLOG)
}

/// Binds `count` UDP sockets to `addr` with SO_REUSEPORT (the kernel sends a client's
/// datagrams, hashed by address, always to the same one). When `addr` has port 0 the first
/// socket picks a port and the others bind to the same one.
pub fn bind_udp_reuseport(addr: SocketAddr, count: usize) -> io::Result<Vec<UdpSocket>> {
    let mut out = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        if addr.is_ipv6() {
            socket.set_only_v6(true)?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket: UdpSocket = socket.into();
        addr = socket.local_addr()?;
        out.push(socket);
    }
    Ok(out)
}

/// Binds one plain listening socket (the admin listener).
pub fn bind_one(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_gives_every_socket_the_same_port() {
        let ls = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = ls[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        for l in &ls {
            assert_eq!(l.local_addr().unwrap().port(), port);
        }
        let us = bind_udp_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = us[0].local_addr().unwrap().port();
        assert_ne!(port, 0);
        for u in &us {
            assert_eq!(u.local_addr().unwrap().port(), port);
        }
    }
}

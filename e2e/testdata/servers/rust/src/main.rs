// A small HTTP/1.1 server in Rust on hotcluster's socket: the listener from
// listenfd (which checks LISTEN_PID), READY=1 on NOTIFY_SOCKET, a thread per
// connection with keep-alive, and on SIGTERM a drain: the listener is
// closed, each connection answers its next request with "Connection: close",
// an idle one is closed after 2s without a request, and the process exits
// once every connection has ended.
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

static STOPPING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOPPING.store(true, Ordering::SeqCst);
}

fn notify(msg: &str) {
    if let Ok(path) = std::env::var("NOTIFY_SOCKET") {
        if let Ok(s) = UnixDatagram::unbound() {
            let _ = s.send_to(msg.as_bytes(), path);
        }
    }
}

fn serve(mut c: TcpStream, active: Arc<AtomicUsize>) {
    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
    let mut buf = Vec::new();
    let mut stop_seen: Option<Instant> = None;
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let closing = STOPPING.load(Ordering::SeqCst) || head.contains("connection: close");
            let body = format!(
                "hello pid={} gen={} worker={}\n",
                std::process::id(),
                std::env::var("HOTCLUSTER_GENERATION").unwrap_or_default(),
                std::env::var("HOTCLUSTER_WORKER_ID").unwrap_or_default()
            );
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{}",
                body.len(),
                if closing { "Connection: close\r\n" } else { "" },
                body
            );
            if c.write_all(resp.as_bytes()).is_err() || closing {
                break;
            }
            buf.drain(..end + 4);
            continue;
        }
        match c.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                if STOPPING.load(Ordering::SeqCst) {
                    let since = *stop_seen.get_or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_secs(2) {
                        break;
                    }
                }
            }
            Err(_) => break,
        }
    }
    active.fetch_sub(1, Ordering::SeqCst);
}

fn main() {
    let mut fds = listenfd::ListenFd::from_env();
    let listener: TcpListener = match fds.take_tcp_listener(0) {
        Ok(Some(l)) => l,
        other => {
            eprintln!("no socket from LISTEN_FDS: {:?}", other.err());
            std::process::exit(1);
        }
    };
    unsafe {
        libc::signal(libc::SIGTERM, (on_term as extern "C" fn(libc::c_int)) as libc::sighandler_t);
    }
    // The listener is non-blocking, shared with the master: never change
    // that; poll for connections instead.
    let active = Arc::new(AtomicUsize::new(0));
    notify("READY=1");
    while !STOPPING.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((c, _)) => {
                let _ = c.set_nonblocking(false);
                active.fetch_add(1, Ordering::SeqCst);
                let a = active.clone();
                std::thread::spawn(move || serve(c, a));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let mut p = libc::pollfd { fd: std::os::unix::io::AsRawFd::as_raw_fd(&listener), events: libc::POLLIN, revents: 0 };
                unsafe {
                    libc::poll(&mut p, 1, 100);
                }
            }
            Err(_) => {}
        }
    }
    drop(listener); // closed, never shutdown(2): the socket is shared
    notify("STOPPING=1");
    while active.load(Ordering::SeqCst) > 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
}

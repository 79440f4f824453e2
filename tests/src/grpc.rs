//! A real gRPC server for the tests: `tests/fixtures/grpc/server.py` on grpcio, with
//! `grpc.health.v1.Health` and an `envoy.service.auth.v3.Authorization` (see the script).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// The running server; killed when dropped.
pub struct GrpcServer {
    child: Child,
    /// Its `127.0.0.1:port`.
    pub addr: String,
}

impl GrpcServer {
    /// Starts the server (grpcio must be installed: `cargo xtask setup`).
    pub fn start() -> GrpcServer {
        let script = xtask::project::root().join("tests/fixtures/grpc/server.py");
        let mut child = Command::new("python3")
            .arg("-I")
            .arg(&script)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run python3 (grpcio is installed by `cargo xtask setup`)");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("its stdout");
        let _ = BufReader::new(stdout).read_line(&mut line);
        let port: u16 = match line.trim().parse() {
            Ok(port) => port,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "the gRPC test server did not start (said {line:?}): is grpcio installed? run `cargo xtask setup`"
                )
            }
        };
        GrpcServer {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for GrpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

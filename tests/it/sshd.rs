//! A real OpenSSH server on 127.0.0.1 for Fabric's `run()`: its own host key, one client key, started
//! as a child process and stopped by its PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::io::{BufRead, BufReader};

pub struct Sshd {
    pub port: u16,
    pub client_key: PathBuf,
    pub user: String,
    child: Child,
}

impl Sshd {
    /// Starts sshd in `dir`; fails the test with a plain message where sshd is not installed.
    pub fn start(dir: &Path) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "sshd is not installed, so the Fabric-over-SSH test cannot run: `bash .ci/run` installs \
             openssh-server (or `apt-get install openssh-server`)"
        );
        let dir = dir.join("sshd");
        std::fs::create_dir_all(&dir).unwrap();
        let keygen = |name: &str| {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(dir.join(name))
                .status()
                .unwrap();
            assert!(status.success());
        };
        keygen("host_key");
        keygen("client_key");
        std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys")).unwrap();
        // sshd insists on its privilege-separation directory.
        let _ = std::fs::create_dir_all("/run/sshd");
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let config = dir.join("sshd_config");
        std::fs::write(
            &config,
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\nStrictModes no\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let mut child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("sshd starts");
        // sshd says when it listens; read its log until then (it exits, closing the pipe, on failure).
        let mut log = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            if log.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("sshd did not start:\n{seen}");
            }
            seen.push_str(&line);
            if line.contains("Server listening on") {
                break;
            }
        }
        std::thread::spawn(move || for _ in log.lines() {});
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        Sshd {
            port,
            client_key: dir.join("client_key"),
            user: user.trim().to_string(),
            child,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

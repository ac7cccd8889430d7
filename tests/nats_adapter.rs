//! The shipped NATS adapter (adapters/nats/adapter.py, issue 16) against a private
//! nats-server started by the test on its own port with its configuration in a
//! temporary directory (the machine's shared NATS on 4222 is never touched), driven
//! through bindery's `exec` backend and checked with a raw NATS protocol client.
//! The JetStream test runs its server with JetStream (store in the temporary directory).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use bindery::backends::exec::ExecBackend;
use bindery::backends::{BindingSpec, Credentials, InstanceSpec, ServiceBackend};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

const ADAPTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/adapters/nats/adapter.py");

struct PrivateNats {
    child: Child,
    port: u16,
    dir: PathBuf,
    jetstream: bool,
}

impl PrivateNats {
    fn start() -> Self {
        Self::start_with(false)
    }

    fn start_with(jetstream: bool) -> Self {
        let dir =
            std::env::temp_dir().join(format!("bindery-nats-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        std::fs::write(dir.join("accounts.conf"), "accounts {}\n").unwrap();
        let mut config = format!(
            "listen: 127.0.0.1:{port}\npid_file: \"{}\"\ninclude \"accounts.conf\"\n",
            dir.join("nats.pid").display()
        );
        if jetstream {
            let store = dir.join("jetstream");
            config += &format!("jetstream {{ store_dir: \"{}\" }}\n", store.display());
        }
        std::fs::write(dir.join("nats.conf"), config).unwrap();
        let child = Command::new("nats-server")
            .arg("-c")
            .arg(dir.join("nats.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
            || !dir.join("nats.pid").exists()
        {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            port,
            dir,
            jetstream,
        }
    }

    fn config(&self) -> Value {
        json!({
            "port": self.port,
            "state_file": self.dir.join("state.json"),
            "accounts_file": self.dir.join("accounts.conf"),
            "pid_file": self.dir.join("nats.pid"),
            "jetstream": self.jetstream,
        })
    }

    /// Fails when the adapter's files hold the password of any of `credentials`.
    fn assert_no_clear_password(&self, credentials: &[&Credentials]) {
        for file in ["state.json", "accounts.conf"] {
            let text = std::fs::read_to_string(self.dir.join(file)).unwrap();
            for c in credentials {
                assert!(
                    !text.contains(&c.0["password"]),
                    "{file} holds a binding's password in clear"
                );
            }
            assert!(text.contains("$2b$"), "{file} holds bcrypt hashes");
        }
    }

    /// The names of the directories of streams in the server's JetStream store.
    fn stored_streams(&self) -> Vec<String> {
        let mut streams = Vec::new();
        let store = self.dir.join("jetstream").join("jetstream");
        for account in std::fs::read_dir(store).into_iter().flatten().flatten() {
            let dir = account.path().join("streams");
            for stream in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                streams.push(stream.file_name().to_string_lossy().into_owned());
            }
        }
        streams
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal NATS client: CONNECT with a user and password, SUB, PUB, read MSG.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects; `Err` with the server's -ERR line when the credentials are refused.
    fn connect(port: u16, credentials: &Credentials) -> Result<Self, String> {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut client = Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
        };
        let info = client.line();
        assert!(info.starts_with("INFO"), "{info}");
        let connect = json!({"user": credentials.0["username"], "pass": credentials.0["password"], "verbose": false, "pedantic": false});
        client.send(&format!("CONNECT {connect}\r\nPING\r\n"));
        match client.line() {
            l if l.starts_with("PONG") => Ok(client),
            l => Err(l),
        }
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    /// The next line from the server, answering its keep-alive PINGs on the way.
    fn line(&mut self) -> String {
        loop {
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(_) if line.trim_end() == "PING" => self.send("PONG\r\n"),
                Ok(_) => return line.trim_end().to_owned(),
                Err(_) => return String::new(), // timed out: nothing arrived
            }
        }
    }

    fn subscribe(&mut self, subject: &str) {
        self.send(&format!("SUB {subject} 1\r\nPING\r\n"));
        assert_eq!(self.line(), "PONG");
    }

    fn publish(&mut self, subject: &str, message: &str) {
        self.send(&format!(
            "PUB {subject} {}\r\n{message}\r\nPING\r\n",
            message.len()
        ));
        // A subscriber's own message comes back to it before the PONG.
        loop {
            match self.line() {
                l if l == "PONG" => return,
                l if l.starts_with("MSG") => drop(self.line()),
                l => panic!("unexpected {l:?}"),
            }
        }
    }

    /// A request (a PUB with a reply subject) and its answer, or what the server said
    /// instead (a permission violation, "" when nobody answered).
    fn request(&mut self, subject: &str, body: &str) -> String {
        self.send(&format!(
            "SUB _INBOX.test 99\r\nPUB {subject} _INBOX.test {}\r\n{body}\r\n",
            body.len()
        ));
        let answer = self.next_message();
        self.send("UNSUB 99\r\n");
        answer
    }

    /// `$JS.API.<api>` as a JSON answer.
    fn jetstream(&mut self, api: &str) -> Value {
        let answer = self.request(&format!("$JS.API.{api}"), "");
        serde_json::from_str(&answer).unwrap_or_else(|_| panic!("{api}: {answer:?}"))
    }

    /// The next message's payload, or what the server said instead ("" when silent).
    fn next_message(&mut self) -> String {
        let header = self.line();
        if header.starts_with("MSG") {
            self.line()
        } else {
            header
        }
    }
}

fn settings(server: &PrivateNats) -> Value {
    json!({"command": [ADAPTER], "timeout_seconds": 30, "config": server.config()})
}

/// An instance of the NATS plan whose settings are `settings`.
fn instance<'a>(
    id: &'a str,
    settings: &'a Value,
    none: &'a Map<String, Value>,
) -> InstanceSpec<'a> {
    InstanceSpec {
        instance_id: id,
        service_id: "nats",
        plan_id: "nats-account",
        plan_settings: settings,
        parameters: none,
        context: None,
        facts: None,
    }
}

#[tokio::test]
async fn bindings_talk_in_their_account_only_and_are_refused_after_unbind() {
    let server = PrivateNats::start();
    let settings = settings(&server);
    let none = Map::new();
    let read_only = json!({"read_only": true}).as_object().unwrap().clone();
    let instance = |id| instance(id, &settings, &none);
    let (a, b) = (instance("instance-a"), instance("instance-b"));
    let backend = ExecBackend::default();
    backend.provision(&a).await.unwrap();
    backend.provision(&b).await.unwrap();
    let password = |c: char| SecretString::from(c.to_string().repeat(32));
    let (pa, pr, pb) = (password('a'), password('r'), password('b'));
    let bind = |instance, id, parameters, password| BindingSpec {
        instance,
        binding_id: id,
        parameters,
        password,
    };
    let on_a = bind(a, "binding-a", &none, &pa);
    let ca = backend.bind(&on_a).await.unwrap();
    let cr = backend
        .bind(&bind(a, "binding-a-ro", &read_only, &pr))
        .await
        .unwrap();
    let cb = backend
        .bind(&bind(b, "binding-b", &none, &pb))
        .await
        .unwrap();

    // The files hold bcrypt hashes, and a repeated bind (same password) still works.
    server.assert_no_clear_password(&[&ca, &cr, &cb]);
    assert_eq!(backend.bind(&on_a).await.unwrap(), ca);

    let mut reader_a = Client::connect(server.port, &cr).unwrap();
    let mut writer_a = Client::connect(server.port, &ca).unwrap();
    let mut client_b = Client::connect(server.port, &cb).unwrap();
    reader_a.subscribe("orders.>");
    client_b.subscribe("orders.>");
    // A binding talks within its instance's account.
    writer_a.publish("orders.new", "from-a");
    assert_eq!(reader_a.next_message(), "from-a");
    // Another instance's binding, subscribed to the very same subjects, sees nothing,
    // and its own messages never reach instance A.
    assert_eq!(client_b.next_message(), "");
    client_b.publish("orders.new", "from-b");
    assert_eq!(reader_a.next_message(), "");
    // A read-only binding cannot publish.
    reader_a.send("PUB orders.new 2\r\nro\r\nPING\r\n");
    let answer = reader_a.line();
    assert!(answer.contains("Permissions Violation"), "{answer}");

    backend.unbind(&on_a).await.unwrap();
    let refused = Client::connect(server.port, &ca).err().unwrap_or_default();
    assert!(refused.contains("Authorization Violation"), "{refused:?}");
    assert!(
        Client::connect(server.port, &cb).is_ok(),
        "other bindings keep working"
    );

    backend.deprovision(&a).await.unwrap();
    backend.deprovision(&b).await.unwrap();
    assert!(
        Client::connect(server.port, &cb).is_err(),
        "deprovision removes every user"
    );
}

#[tokio::test]
async fn with_jetstream_a_binding_has_its_own_stream_until_unbind() {
    let server = PrivateNats::start_with(true);
    let settings = settings(&server);
    let none = Map::new();
    let read_only = json!({"read_only": true}).as_object().unwrap().clone();
    let instance = |id| instance(id, &settings, &none);
    let (a, b) = (instance("instance-a"), instance("instance-b"));
    let backend = ExecBackend::default();
    backend.provision(&a).await.unwrap();
    backend.provision(&b).await.unwrap();
    let password = |c: char| SecretString::from(c.to_string().repeat(32));
    let (pa, pa2, pr, pb) = (password('a'), password('c'), password('r'), password('b'));
    let bind = |instance, id, parameters, password| BindingSpec {
        instance,
        binding_id: id,
        parameters,
        password,
    };
    let on_a = bind(a, "binding-a", &none, &pa);
    let ca = backend.bind(&on_a).await.unwrap();
    let ca2 = backend
        .bind(&bind(a, "binding-a2", &none, &pa2))
        .await
        .unwrap();
    let cr = backend
        .bind(&bind(a, "binding-a-ro", &read_only, &pr))
        .await
        .unwrap();
    let cb = backend
        .bind(&bind(b, "binding-b", &none, &pb))
        .await
        .unwrap();
    server.assert_no_clear_password(&[&ca, &ca2, &cr, &cb]);
    let stream = ca.0["stream"].clone();
    let prefix = ca.0["subject_prefix"].clone();
    assert_eq!(prefix, format!("{stream}."));
    assert_ne!(stream, ca2.0["stream"]);
    // A read-only binding cannot publish, hence cannot use JetStream: it has no stream.
    assert!(!cr.0.contains_key("stream"), "{:?}", cr.0.keys());

    // A message published under the binding's prefix is stored in its stream.
    let mut writer_a = Client::connect(server.port, &ca).unwrap();
    let info = format!("STREAM.INFO.{stream}");
    assert_eq!(writer_a.jetstream(&info)["state"]["messages"], 0);
    // (Published with a reply subject, JetStream acknowledges once the message is stored.)
    let ack = writer_a.request(&format!("{prefix}orders"), "kept");
    assert!(ack.contains(&format!(r#""stream":"{stream}""#)), "{ack}");
    assert_eq!(writer_a.jetstream(&info)["state"]["messages"], 1);
    // Binding again creates nothing new and loses nothing.
    assert_eq!(backend.bind(&on_a).await.unwrap(), ca);
    assert_eq!(writer_a.jetstream(&info)["state"]["messages"], 1);

    // A read-only binding can neither create nor delete a stream.
    let mut reader_a = Client::connect(server.port, &cr).unwrap();
    let create = r#"{"name": "mine", "subjects": ["mine.>"]}"#;
    let answer = reader_a.request("$JS.API.STREAM.CREATE.mine", create);
    assert!(answer.contains("Permissions Violation"), "{answer}");
    let answer = reader_a.request(&format!("$JS.API.STREAM.DELETE.{stream}"), "");
    assert!(answer.contains("Permissions Violation"), "{answer}");
    // Another instance's binding does not see the stream (accounts isolate instances):
    // it can neither delete it nor publish into it (no stream acknowledges its message).
    let mut client_b = Client::connect(server.port, &cb).unwrap();
    let answer = client_b.jetstream(&format!("STREAM.DELETE.{stream}"));
    assert_eq!(answer["error"]["err_code"], 10059, "{answer}");
    assert_eq!(client_b.request(&format!("{prefix}orders"), "foreign"), "");
    assert_eq!(writer_a.jetstream(&info)["state"]["messages"], 1);

    backend.unbind(&on_a).await.unwrap();
    backend.unbind(&on_a).await.unwrap();
    let mut writer_a2 = Client::connect(server.port, &ca2).unwrap();
    let answer = writer_a2.jetstream(&info);
    assert_eq!(
        answer["error"]["err_code"], 10059,
        "the stream is gone: {answer}"
    );
    let names = writer_a2.jetstream("STREAM.NAMES");
    assert_eq!(names["streams"], json!([ca2.0["stream"]]), "{names}");

    // Deprovision deletes the streams the platform never unbound.
    assert_eq!(
        server.stored_streams().len(),
        2,
        "binding-a2's and binding-b's"
    );
    backend.deprovision(&a).await.unwrap();
    backend.deprovision(&b).await.unwrap();
    assert_eq!(server.stored_streams(), Vec::<String>::new());
}

#[test]
fn the_nats_adapter_passes_adapter_check() {
    for jetstream in [false, true] {
        let server = PrivateNats::start_with(jetstream);
        let output = Command::new(env!("CARGO_BIN_EXE_bindery"))
            .args([
                "adapter-check",
                "--timeout",
                "30",
                "--settings",
                &server.config().to_string(),
                ADAPTER,
            ])
            .env_remove("BINDERY_CONFIG")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.contains("FAIL"), "{text}");
    }
}

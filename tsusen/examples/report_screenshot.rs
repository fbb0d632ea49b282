//! The README's screenshot of the report (`docs/report.png`), reproducibly:
//! 30 generated days with a wave on TCP 5555 on the last one
//! (`report::testdata`, seed 7), enrichment from a small ASN and country
//! database and a label list written here (the report tests' fixtures:
//! `tests/data/mmdb_write.pl`, Debian's libmaxmind-db-writer-perl), served
//! by `tsusen serve` on loopback and photographed by headless Chromium.
//! `cargo xtask screenshot` builds the binary and runs it:
//!
//! `cargo run -p tsusen --example report_screenshot -- TSUSEN_BINARY OUT.png`

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail, ensure};
use base64::Engine as _;
use serde_json::{Value, json};
use tsusen::report::testdata::{
    ASN_NETWORKS, COUNTRY_NETWORKS, LABELS, Spec, generate, write_mmdb,
};

/// The viewport's width; clips reach below it.
const WINDOW: &str = "--window-size=1200,1400";

fn main() -> Result<()> {
    let mut args = std::env::args_os().skip(1);
    let (Some(binary), Some(out)) = (args.next(), args.next()) else {
        bail!("usage: report_screenshot TSUSEN_BINARY OUT.png");
    };
    let out = std::path::absolute(PathBuf::from(out))?;
    let root = std::env::temp_dir().join(format!("tsusen-screenshot-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let result = shoot(Path::new(&binary), &root, &out);
    let _ = std::fs::remove_dir_all(&root);
    result?;
    println!("wrote {}", out.display());
    Ok(())
}

fn shoot(binary: &Path, root: &Path, out: &Path) -> Result<()> {
    let days = root.join("days");
    generate(
        &days,
        &Spec {
            seed: 7,
            ..Spec::bench(30, 40_000)
        },
    )?;
    let (asn, country, labels) = (
        root.join("asn.mmdb"),
        root.join("country.mmdb"),
        root.join("labels.txt"),
    );
    write_mmdb(&asn, "GeoLite2-ASN", ASN_NETWORKS)?;
    write_mmdb(&country, "GeoLite2-Country", COUNTRY_NETWORKS)?;
    std::fs::write(&labels, LABELS)?;

    let mut serve = Command::new(binary)
        .arg("serve")
        .arg("--dir")
        .arg(&days)
        .arg("--asn-db")
        .arg(&asn)
        .arg("--country-db")
        .arg(&country)
        .arg("--labels")
        .arg(&labels)
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("TSUSEN_AUTH")
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let mut line = String::new();
    BufReader::new(serve.stdout.take().context("serve's stdout")?).read_line(&mut line)?;
    let url = line
        .trim()
        .strip_prefix("tsusen: serving ")
        .map(str::to_owned);
    // The overview, then the drill-down of the wave (the spike table's
    // link), where the enrichment columns are.
    let drill = out.with_file_name(format!(
        "{}-drill.png",
        out.file_stem().unwrap_or_default().to_string_lossy()
    ));
    let shot = url
        .with_context(|| format!("unexpected first line from serve: {line:?}"))
        .and_then(|url| {
            chromium(
                root,
                &[
                    (
                        Clip {
                            url: url.clone(),
                            from: None,
                            to: "hours",
                            max_height: 1500.0,
                        },
                        out,
                    ),
                    (
                        Clip {
                            url: format!("{url}?day=2026-01-30&proto=TCP&port=5555"),
                            from: Some("drill"),
                            to: "destinations",
                            max_height: 1400.0,
                        },
                        &drill,
                    ),
                ],
            )
        });
    let _ = serve.kill();
    let _ = serve.wait();
    shot
}

/// What to photograph: a section of the page from its top, at most this tall.
struct Clip<'a> {
    url: String,
    from: Option<&'a str>,
    to: &'a str,
    max_height: f64,
}

/// Load each clip's page in headless Chromium and write its PNG, driving it
/// over the DevTools protocol (`--remote-debugging-pipe`: requests on fd 3,
/// answers on fd 4, NUL-terminated JSON), so that a clip can start at a
/// section further down the page.
fn chromium(root: &Path, shots: &[(Clip, &Path)]) -> Result<()> {
    let mut child = Command::new("sh")
        .args([
            "-c",
            "exec 3<&0 4>&1 </dev/null >/dev/null; exec timeout 120 chromium \"$@\"",
            "sh",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--hide-scrollbars",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--remote-debugging-pipe",
            WINDOW,
        ])
        .arg(format!(
            "--user-data-dir={}",
            root.join("profile").display()
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start chromium")?;
    let mut cdp = Cdp {
        to: child.stdin.take().context("chromium's pipe")?,
        from: BufReader::new(child.stdout.take().context("chromium's pipe")?),
        id: 0,
        events: Vec::new(),
    };
    let result = photograph(&mut cdp, shots);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn photograph(cdp: &mut Cdp, shots: &[(Clip, &Path)]) -> Result<()> {
    let target = cdp.call(None, "Target.createTarget", &json!({"url": "about:blank"}))?;
    let attached = cdp.call(
        None,
        "Target.attachToTarget",
        &json!({"targetId": target["targetId"], "flatten": true}),
    )?;
    let session = attached["sessionId"]
        .as_str()
        .context("no session")?
        .to_owned();
    let session = Some(session.as_str());
    cdp.call(session, "Page.enable", &json!({}))?;
    for (clip, out) in shots {
        cdp.events.clear();
        cdp.call(session, "Page.navigate", &json!({"url": clip.url}))?;
        cdp.wait_for("Page.loadEventFired")?;
        // The served page fills the details from the JSON API after load.
        std::thread::sleep(std::time::Duration::from_secs(2));
        let mut top = |id: Option<&str>| -> Result<f64> {
            let Some(id) = id else { return Ok(0.0) };
            let expression = format!(
                "document.getElementById('{id}').getBoundingClientRect().top + window.scrollY"
            );
            let value = cdp.call(
                session,
                "Runtime.evaluate",
                &json!({"expression": expression, "returnByValue": true}),
            )?;
            value["result"]["value"]
                .as_f64()
                .with_context(|| format!("no #{id} on the page: {value}"))
        };
        let (from, to) = (top(clip.from)?, top(Some(clip.to))?);
        let shot = cdp.call(
            session,
            "Page.captureScreenshot",
            &json!({
                "format": "png",
                "captureBeyondViewport": true,
                "clip": {"x": 0, "y": from, "width": 1200,
                         "height": (to - from).min(clip.max_height), "scale": 1},
            }),
        )?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().context("no screenshot data")?)?;
        std::fs::write(out, png).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

/// A DevTools protocol connection: calls with their answers, events kept.
struct Cdp {
    to: std::process::ChildStdin,
    from: BufReader<std::process::ChildStdout>,
    id: u64,
    events: Vec<String>,
}

impl Cdp {
    fn call(&mut self, session: Option<&str>, method: &str, params: &Value) -> Result<Value> {
        self.id += 1;
        let mut message = json!({"id": self.id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message)?;
        bytes.push(0);
        self.to.write_all(&bytes)?;
        loop {
            let answer = self.next()?;
            if answer["id"] == self.id {
                if let Some(error) = answer.get("error") {
                    bail!("chromium: {method}: {error}");
                }
                return Ok(answer["result"].clone());
            }
        }
    }

    fn wait_for(&mut self, event: &str) -> Result<()> {
        while !self.events.iter().any(|e| e == event) {
            self.next()?;
        }
        Ok(())
    }

    fn next(&mut self) -> Result<Value> {
        let mut bytes = Vec::new();
        self.from.read_until(0, &mut bytes)?;
        ensure!(bytes.pop() == Some(0), "chromium closed its pipe");
        let message: Value = serde_json::from_slice(&bytes)?;
        if let Some(method) = message["method"].as_str() {
            self.events.push(method.to_owned());
        }
        Ok(message)
    }
}

//! `vz render`: print the desired objects as multi-document YAML, like `helm template` — except that
//! secret values (a Secret's data, private keys) are masked, as in every output of `vz`, and the
//! objects whose content only apply can make (certificates, copies of a CA) are named, not rendered.

use std::process::ExitCode;

use anyhow::{Context, Result};
use vz_providers::manifest::FillTarget;

use super::Desired;
use crate::cli::{ClusterArgs, RenderArgs};
use crate::output::out;
use crate::sensitive::mask_object;

/// Run `vz render`.
pub fn run(cluster: &ClusterArgs, args: &RenderArgs) -> Result<ExitCode> {
    let desired = Desired::load(args.config.file()?)?;
    if args.watch_deployment {
        let workspace = super::workspace::current(cluster, &desired.platform.source)?;
        out(&crate::watch::deployment::render(
            &desired,
            &args.image,
            &workspace,
        )?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut text = String::new();
    for id in desired.graph.order() {
        let Some(step) = desired.steps.iter().find(|s| &s.id == id) else {
            continue;
        };
        for m in &step.objects {
            let dns = m.api_version == vz_providers::dns_records::API_VERSION;
            if m.certificate.is_some() || !m.fills.is_empty() || dns {
                // What they hold exists only in the cluster, made or read by apply; DNS records
                // are not Kubernetes objects.
                let copy = m.fills.iter().find(|f| f.target == FillTarget::Data);
                let what = if dns {
                    "a DNS record, written to the DNS server by vz apply".to_string()
                } else if m.certificate.is_some() {
                    "a certificate vz issues during apply; its key never leaves the cluster"
                        .to_string()
                } else if let Some(f) = copy {
                    format!("a copy of Secret {} that vz makes during apply", f.from)
                } else {
                    "holds a CA certificate vz copies from the cluster during apply".to_string()
                };
                text.push_str(&format!(
                    "# not rendered: {} ({what})\n",
                    step.address_of(m)
                ));
                continue;
            }
            text.push_str("---\n");
            text.push_str(&format!("# {}\n", step.address_of(m)));
            if m.has_unknown() {
                // Left null below: they come from steps applied before this one.
                let fields: Vec<String> = crate::diff::unknown_fields(None, m)
                    .into_iter()
                    .map(|f| f.path)
                    .collect();
                text.push_str(&format!(
                    "# known after apply (null below): {}\n",
                    fields.join(", ")
                ));
            }
            let shown = mask_object(&m.kind, &m.body);
            if shown != *m.body {
                text.push_str("# sensitive values masked (vz apply sends them as configured)\n");
            }
            text.push_str(
                &serde_saphyr::to_string(&shown)
                    .with_context(|| format!("cannot render {} as YAML", m.display_name()))?,
            );
        }
    }
    out(&text)?;
    Ok(ExitCode::SUCCESS)
}

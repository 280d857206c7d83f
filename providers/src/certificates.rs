//! Steps `certificates.ca`, `certificates.tls`, `certificates.webhook-ca` and
//! `certificates.webhooks`: the certificates `vz` issues itself, and the CA bundles it writes.
//!
//! A certificate is a Secret whose [`Manifest::certificate`] says what to issue
//! ([`CertSpec`](crate::manifest::CertSpec), built with [`crate::tls`], as other steps build
//! theirs); its body holds the type, labels and annotations describing the certificate
//! (`vz.dev/issuer`, `vz.dev/alt-names`, ...), never key material. The engine issues the key and
//! certificate during apply, keeps the ones in the cluster while they are good, and issues them
//! again when the names, the key type or the issuer change, or when the expiry is within
//! `renewBeforeDays`. A CA bundle (a field holding a CA certificate) is a [`Fill`]: copied by the
//! engine from a Secret in the cluster when it plans and applies.
//!
//! | certificate | Secret | issuer | names |
//! |---|---|---|---|
//! | platform CA (unless `certificates.ca.secretName`) | `cert-manager/verrazzano-ca-certificate-secret` | itself; CN `verrazzano-root-ca-<8 random letters>` | — |
//! | CA bundle for clients | `verrazzano-system/verrazzano-tls-ca` (`cacerts.pem`) | copy of the platform CA's trust bundle (`ca.crt`) | — |
//! | Rancher's CA bundle (Rancher on) | `cattle-system/tls-ca` (`cacerts.pem`) | the same copy | — |
//! | system TLS, one per system Ingress | the Ingress's TLS secret, in its namespace | platform CA | the Ingress's hosts |
//! | Istio's plug-in CA (see [`crate::istio`]) | `istio-system/cacerts` | platform CA (an intermediate) | — |
//! | webhook CA, per `certificates.webhooks` entry | `<ns>/<prefix>-ca` | itself | — |
//! | webhook serving certificate | `<ns>/<prefix>-tls` | the webhook CA | `<svc>`, `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local` |
//!
//! A CA `vz` issues rotates with overlap (`certificates.caOverlap`): its Secret's `ca.crt` is its
//! trust bundle, which every copy follows, and a rotation announces the new CA there before it
//! signs (see the engine's `lifecycle::rotation`).
//!
//! The webhook CA's trust bundle is written into the `caBundle` of every entry of the configurations
//! the entry lists (and of a CRD's conversion webhook) as **patched** objects: `vz` owns only that
//! field. A configuration that does not exist yet is pending until its operator creates it.

use serde_json::{Value, json};

use crate::config::{CaSource, Platform, WebhookCert};
use crate::manifest::{Fill, FillTarget, Manifest, Role, Step};
use crate::names::{
    CA_SECRET, CA_STEP, CATTLE_SYSTEM, CERT_MANAGER, INGRESS_NGINX_STEP, SecretRef, TLS_STEP,
    VERRAZZANO_SYSTEM,
};
use crate::outputs::{Deferred, Outputs};
use crate::system_ingresses;
use crate::tls::{after_platform_ca, cert_spec, certificate, leaf_spec, platform_ca};

/// Step of the webhook CAs.
pub const WEBHOOK_CA_STEP: &str = "certificates.webhook-ca";
/// Step of the webhook serving certificates and the CA bundles in webhook configurations.
pub const WEBHOOKS_STEP: &str = "certificates.webhooks";

/// Prefix of the platform CA's common name; 8 random letters follow.
pub const CA_COMMON_NAME: &str = "verrazzano-root-ca";
/// The Secret holding the platform CA's certificate for clients.
pub const BUNDLE_SECRET: &str = "verrazzano-tls-ca";
/// Rancher's copy of the bundle (in `cattle-system`, key [`BUNDLE_KEY`]).
pub const RANCHER_BUNDLE_SECRET: &str = "tls-ca";
/// The key of [`BUNDLE_SECRET`] that holds the bundle.
pub const BUNDLE_KEY: &str = "cacerts.pem";

/// The certificate steps.
pub fn steps(p: &Platform, outputs: &Outputs) -> Vec<Step> {
    let c = &p.certificates;
    let mut steps = Vec::new();
    if c.ca == CaSource::SelfSigned {
        let mut spec = cert_spec(c, Role::Root, CA_COMMON_NAME, None);
        spec.random_suffix = true;
        steps.push(Step {
            id: CA_STEP.into(),
            description: "the platform CA, self-signed".into(),
            depends_on: vec![],
            objects: vec![certificate(
                CERT_MANAGER,
                CA_SECRET,
                spec,
                Deferred::Known(vec![]),
            )],
            outputs: vec![],
        });
    }
    let mut objects = vec![bundle(p, VERRAZZANO_SYSTEM, BUNDLE_SECRET)];
    if p.components.rancher {
        // Rancher, installed with `privateCA`, trusts what Secret `tls-ca` holds.
        objects.push(bundle(p, CATTLE_SYSTEM, RANCHER_BUNDLE_SECRET));
    }
    if p.serves_system_routes() {
        for (namespace, name, hosts) in system_ingresses::tls_secrets(p, outputs) {
            objects.push(certificate(namespace, name, leaf_spec(p), hosts));
        }
    }
    let mut depends_on = after_platform_ca(p);
    if p.components.ingress_nginx {
        // The Ingress hosts are made of the ingress address it publishes.
        depends_on.push(INGRESS_NGINX_STEP.to_string());
    } else if p.gateway_api() {
        // The routes' hosts are made of the ingress gateway's address.
        depends_on.push(crate::names::ISTIO_GATEWAYS_STEP.to_string());
    }
    steps.push(Step {
        id: TLS_STEP.into(),
        description: "TLS certificates of the system Ingresses, and the CA bundle for clients"
            .into(),
        depends_on,
        objects,
        outputs: vec![],
    });
    if !c.webhooks.is_empty() {
        steps.extend(webhook_steps(p));
    }
    steps
}

/// `<namespace>/<name>`: the platform CA's trust bundle, for clients, in key [`BUNDLE_KEY`].
fn bundle(p: &Platform, namespace: &str, name: &str) -> Manifest {
    let mut m = Manifest::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {BUNDLE_KEY: null},
    }));
    m.fills.push(Fill {
        target: FillTarget::Pointer(format!("/data/{BUNDLE_KEY}")),
        from: platform_ca(p),
        keys: vec!["ca.crt".into(), "tls.crt".into()],
    });
    m
}

/// The names a webhook Service is called by.
pub fn service_names(w: &WebhookCert) -> Vec<String> {
    let (s, ns) = (&w.service, &w.namespace);
    vec![
        s.clone(),
        format!("{s}.{ns}"),
        format!("{s}.{ns}.svc"),
        format!("{s}.{ns}.svc.cluster.local"),
    ]
}

fn webhook_steps(p: &Platform) -> Vec<Step> {
    let c = &p.certificates;
    let mut cas = Vec::new();
    let mut serving = Vec::new();
    for w in &c.webhooks {
        let ca = SecretRef::new(&w.namespace, &format!("{}-ca", w.secret_prefix));
        let common_name = format!("{}.{}.svc", w.service, w.namespace);
        cas.push(certificate(
            &ca.namespace,
            &ca.name,
            cert_spec(c, Role::Root, &format!("{common_name} CA"), None),
            Deferred::Known(vec![]),
        ));
        serving.push(certificate(
            &w.namespace,
            &format!("{}-tls", w.secret_prefix),
            cert_spec(c, Role::Leaf, &common_name, Some(ca.clone())),
            Deferred::Known(service_names(w)),
        ));
        for (kind, name) in &w.configurations {
            serving.push(ca_bundle_patch(kind, name, &ca));
        }
    }
    vec![
        Step {
            id: WEBHOOK_CA_STEP.into(),
            description: "a CA for each webhook Service the API server calls".into(),
            depends_on: vec![],
            objects: cas,
            outputs: vec![],
        },
        Step {
            id: WEBHOOKS_STEP.into(),
            description: "webhook serving certificates, and their CA in the webhook configurations"
                .into(),
            depends_on: vec![WEBHOOK_CA_STEP.into()],
            objects: serving,
            outputs: vec![],
        },
    ]
}

/// The `caBundle` of a webhook configuration's entries, or of a CRD's conversion webhook, as a
/// patch of the object its operator creates.
fn ca_bundle_patch(kind: &str, name: &str, ca: &SecretRef) -> Manifest {
    let from = ca.clone();
    let keys = vec!["ca.crt".to_string(), "tls.crt".to_string()];
    let (body, target): (Value, FillTarget) = if kind == "CustomResourceDefinition" {
        (
            json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": kind,
                "metadata": {"name": name},
                "spec": {"conversion": {"webhook": {"clientConfig": {"caBundle": null}}}},
            }),
            FillTarget::Pointer("/spec/conversion/webhook/clientConfig/caBundle".into()),
        )
    } else {
        (
            json!({
                "apiVersion": "admissionregistration.k8s.io/v1",
                "kind": kind,
                "metadata": {"name": name},
                "webhooks": [],
            }),
            FillTarget::EveryWebhook,
        )
    };
    let mut m = Manifest::from_value(body).patched();
    m.fills.push(Fill { target, from, keys });
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::for_test as platform;
    use crate::tls::ALT_NAMES_ANNOTATION;

    fn all(p: &Platform) -> Vec<Step> {
        steps(p, &Outputs::default())
    }

    fn addresses(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .flat_map(|s| s.objects.iter().map(|m| s.address_of(m)))
            .collect()
    }

    #[test]
    fn every_system_ingress_tls_secret_is_issued_by_the_platform_ca() {
        let p = platform("ingress: {type: NodePort}\n");
        let s = all(&p);
        let a = addresses(&s);
        assert!(a.contains(
            &"certificates.ca/Secret/cert-manager/verrazzano-ca-certificate-secret".into()
        ));
        assert!(a.contains(&"certificates.tls/Secret/verrazzano-system/verrazzano-tls-ca".into()));
        let tls = s.iter().find(|s| s.id == TLS_STEP).expect("tls step");
        let console = tls
            .objects
            .iter()
            .find(|m| m.name == "verrazzano-tls")
            .expect("console secret");
        let spec = console.certificate.as_ref().expect("a certificate");
        assert_eq!(spec.sans, ["verrazzano.default.127.0.0.1.nip.io"]);
        assert_eq!(spec.common_name, "verrazzano.default.127.0.0.1.nip.io");
        assert_eq!(
            spec.issuer,
            Some(SecretRef::new(
                "cert-manager",
                "verrazzano-ca-certificate-secret"
            ))
        );
        assert_eq!(spec.validity_days, 90);
        assert_eq!(console.body["type"], "kubernetes.io/tls");
        assert!(
            console.body.get("data").is_none(),
            "no key material in the body"
        );
        assert_eq!(
            console.body["metadata"]["annotations"][ALT_NAMES_ANNOTATION],
            "verrazzano.default.127.0.0.1.nip.io"
        );
        assert!(tls.depends_on.contains(&CA_STEP.to_string()));
    }

    #[test]
    fn hosts_not_known_yet_make_the_certificate_known_after_apply() {
        let p = platform("");
        let s = all(&p);
        let tls = s.iter().find(|s| s.id == TLS_STEP).expect("tls step");
        let console = tls
            .objects
            .iter()
            .find(|m| m.name == "verrazzano-tls")
            .expect("console secret");
        assert!(console.has_unknown());
        assert!(tls.depends_on.contains(&"ingress-nginx".to_string()));
    }

    #[test]
    fn a_ca_of_your_own_is_read_not_issued() {
        let p = platform("certificates: {ca: {secretName: my-ca, namespace: security}}\n");
        let s = all(&p);
        assert!(s.iter().all(|s| s.id != CA_STEP));
        let tls = s.iter().find(|s| s.id == TLS_STEP).expect("tls step");
        assert!(tls.depends_on.iter().all(|d| d != CA_STEP));
        for m in &tls.objects {
            if let Some(spec) = &m.certificate {
                assert_eq!(spec.issuer, Some(SecretRef::new("security", "my-ca")));
            } else {
                assert_eq!(m.fills[0].from, SecretRef::new("security", "my-ca"));
            }
        }
    }

    #[test]
    fn a_webhook_gets_a_ca_a_serving_certificate_and_bundle_patches() {
        let p = platform(
            "certificates:\n  webhooks:\n    - service: op-webhook\n      namespace: verrazzano-install\n      secretPrefix: op\n      configurations: [ValidatingWebhookConfiguration/op-validator, CustomResourceDefinition/things.example.io]\n",
        );
        let s = all(&p);
        let a = addresses(&s);
        for want in [
            "certificates.webhook-ca/Secret/verrazzano-install/op-ca",
            "certificates.webhooks/Secret/verrazzano-install/op-tls",
            "certificates.webhooks/ValidatingWebhookConfiguration/op-validator",
            "certificates.webhooks/CustomResourceDefinition/things.example.io",
        ] {
            assert!(a.contains(&want.to_string()), "{want} in {a:?}");
        }
        let hooks = s.iter().find(|s| s.id == WEBHOOKS_STEP).expect("step");
        let tls = &hooks.objects[0];
        let spec = tls.certificate.as_ref().expect("cert");
        assert_eq!(
            spec.sans,
            [
                "op-webhook",
                "op-webhook.verrazzano-install",
                "op-webhook.verrazzano-install.svc",
                "op-webhook.verrazzano-install.svc.cluster.local"
            ]
        );
        assert_eq!(spec.common_name, "op-webhook.verrazzano-install.svc");
        let vwc = &hooks.objects[1];
        assert_eq!(vwc.ownership, crate::manifest::Ownership::Patched);
        assert_eq!(vwc.fills[0].target, FillTarget::EveryWebhook);
        assert_eq!(
            vwc.fills[0].from,
            SecretRef::new("verrazzano-install", "op-ca")
        );
        let crd = &hooks.objects[2];
        assert_eq!(
            crd.fills[0].target,
            FillTarget::Pointer("/spec/conversion/webhook/clientConfig/caBundle".into())
        );
    }
}

//! Reading the values steps publish ([`vz_providers::outputs`]) from the cluster or the state.

use anyhow::Result;
use vz_providers::{Outputs, Step};
use vz_state::State;

use crate::cluster::{Cluster, ObjectRef};

/// The outputs of `step` from its objects as they are in the cluster now (those not there, or not
/// holding a value yet, are left out).
pub async fn of_step(cluster: &Cluster, step: &Step) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for spec in &step.outputs {
        let Some(m) = step
            .objects
            .iter()
            .find(|m| step.address_of(m) == spec.object)
        else {
            continue;
        };
        if let Some(live) = cluster.get(&ObjectRef::of(m)).await?
            && let Some(v) = spec.extract(&live)
        {
            out.push((spec.name.clone(), v));
        }
    }
    Ok(out)
}

/// Every step's outputs: read from the cluster, or with `refresh` off, from what the state recorded.
pub async fn read(
    cluster: &Cluster,
    steps: &[Step],
    state: &State,
    refresh: bool,
) -> Result<Outputs> {
    let mut outputs = Outputs::default();
    for step in steps {
        if refresh {
            for (name, value) in of_step(cluster, step).await? {
                outputs.set(&step.id, &name, value);
            }
        } else {
            for r in state.objects.iter().filter(|r| r.step == step.id) {
                for (name, value) in &r.outputs {
                    outputs.set(&step.id, name, value.clone());
                }
            }
        }
    }
    Ok(outputs)
}

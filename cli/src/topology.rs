//! Where everything runs: one sidecar instance per replica of each version, the
//! gateway, and their ports and addresses for a target.
//!
//! For `process` every instance lives on 127.0.0.1, so Istio's fixed ports (15000,
//! 15001, 15006, 15021, 15090) become a block of [`BLOCK`] ports per instance from a
//! base port: `base + BLOCK * n + offset`. For `compose` every instance is its own
//! container (the app shares its network namespace, as in a pod), so Istio's ports
//! hold unchanged and the container name is the host.

use crate::model::{MeshFile, ServiceSpec, VersionSpec};

/// Ports per instance in the process target.
pub const BLOCK: u16 = 10;
pub const DEFAULT_PORT_BASE: u16 = 20000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Process { port_base: u16 },
    Compose,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Process { .. } => "process",
            Target::Compose => "compose",
        }
    }
}

/// A sidecar's (or the gateway's) ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub admin: u16,
    pub outbound: u16,
    pub inbound: u16,
    pub health: u16,
    pub prometheus: u16,
    /// Where the app listens (sidecars) or the client-facing port (gateway).
    pub app: u16,
}

/// One Envoy: a sidecar next to one replica, or the gateway.
#[derive(Debug, Clone)]
pub struct Instance<'a> {
    /// `reviews-v2-0`, or the gateway's name: file names, container names, node ids.
    pub name: String,
    pub kind: InstanceKind<'a>,
    pub ports: Ports,
    /// The host other instances reach this one at.
    pub host: String,
    /// The address listeners bind to for traffic from other instances.
    pub bind: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub enum InstanceKind<'a> {
    Sidecar {
        service: &'a ServiceSpec,
        version: &'a VersionSpec,
        replica: u32,
    },
    Gateway,
}

/// The ports do not fit below 65536 for the process target.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{instances} instances need ports up to {last}, above 65535: lower --port-base")]
pub struct PortsExhausted {
    pub instances: usize,
    pub last: u32,
}

/// Every instance of `mesh` for `target`: the gateway first, then services in file
/// order, versions in file order, replicas counting from 0.
pub fn instances(mesh: &MeshFile, target: Target) -> Result<Vec<Instance<'_>>, PortsExhausted> {
    let mut out = Vec::new();
    if let Some(g) = &mesh.gateway {
        // The gateway's client-facing port is the one the user wrote, in both targets.
        let ports = Ports {
            app: g.port,
            ..ports_for(target, 0, g.port)?
        };
        out.push(Instance {
            name: g.name.clone(),
            kind: InstanceKind::Gateway,
            ports,
            host: host_for(target, &g.name),
            bind: bind_for(target),
        });
    }
    for s in &mesh.services {
        for v in &s.versions {
            for replica in 0..v.replicas {
                let name = crate::names::instance(&s.name, &v.name, replica);
                let n = out.len();
                let ports = ports_for(target, n, s.app_port())?;
                out.push(Instance {
                    host: host_for(target, &name),
                    name,
                    kind: InstanceKind::Sidecar {
                        service: s,
                        version: v,
                        replica,
                    },
                    ports,
                    bind: bind_for(target),
                });
            }
        }
    }
    if let Target::Process { port_base } = target {
        let last = u32::from(port_base) + u32::from(BLOCK) * out.len() as u32;
        if last > 65535 {
            return Err(PortsExhausted {
                instances: out.len(),
                last,
            });
        }
    }
    Ok(out)
}

fn ports_for(target: Target, n: usize, app: u16) -> Result<Ports, PortsExhausted> {
    match target {
        Target::Compose => Ok(Ports {
            admin: 15000,
            outbound: 15001,
            inbound: 15006,
            health: 15021,
            prometheus: 15090,
            app,
        }),
        Target::Process { port_base } => {
            let start = u32::from(port_base) + u32::from(BLOCK) * n as u32;
            let at = |offset: u32| {
                u16::try_from(start + offset).map_err(|_| PortsExhausted {
                    instances: n + 1,
                    last: start + offset,
                })
            };
            Ok(Ports {
                admin: at(0)?,
                outbound: at(1)?,
                inbound: at(6)?,
                health: at(2)?,
                prometheus: at(9)?,
                app: at(5)?,
            })
        }
    }
}

fn host_for(target: Target, name: &str) -> String {
    match target {
        Target::Process { .. } => "127.0.0.1".to_string(),
        Target::Compose => name.to_string(),
    }
}

fn bind_for(target: Target) -> &'static str {
    match target {
        Target::Process { .. } => "127.0.0.1",
        Target::Compose => "0.0.0.0",
    }
}

impl Instance<'_> {
    pub fn is_gateway(&self) -> bool {
        matches!(self.kind, InstanceKind::Gateway)
    }

    pub fn service(&self) -> Option<&ServiceSpec> {
        match self.kind {
            InstanceKind::Sidecar { service, .. } => Some(service),
            InstanceKind::Gateway => None,
        }
    }
}

//! flotilla-proto: the `.proto` files of every Flotilla gRPC API and the tonic/prost code
//! generated from them. Must not contain logic: behaviour lives in the crates that serve or call.
#![forbid(unsafe_code)]

/// `flotilla.repo.v1`: the repo-server API.
pub mod repo {
    pub mod v1 {
        #![allow(clippy::all, missing_docs)]
        tonic::include_proto!("flotilla.repo.v1");
    }
}

/// Encoded `FileDescriptorSet` of all Flotilla protos (for gRPC reflection and tooling).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/flotilla_descriptor.bin"));

#[cfg(test)]
mod tests {
    use prost::Message;

    #[test]
    fn descriptor_set_names_the_versioned_service_and_its_rpcs() {
        let fds = prost_types::FileDescriptorSet::decode(super::FILE_DESCRIPTOR_SET)
            .expect("valid descriptor set");
        let file = fds
            .file
            .iter()
            .find(|f| f.package() == "flotilla.repo.v1")
            .expect("flotilla.repo.v1 package");
        let svc = file
            .service
            .iter()
            .find(|s| s.name() == "RepoServer")
            .expect("RepoServer service");
        let methods: Vec<&str> = svc.method.iter().map(|m| m.name()).collect();
        assert_eq!(
            methods,
            [
                "ResolveRevision",
                "GenerateManifests",
                "GetLoad",
                "ListRepoPaths",
                "UpdateRevisionForPaths"
            ]
        );
    }

    #[test]
    fn source_kind_is_a_oneof() {
        use super::repo::v1::{ApplicationSource, DirectorySource, application_source::Kind};
        let src = ApplicationSource {
            path: "apps/web".into(),
            kind: Some(Kind::Directory(DirectorySource {
                recurse: true,
                ..Default::default()
            })),
            ..Default::default()
        };
        let back = ApplicationSource::decode(src.encode_to_vec().as_slice()).expect("decodes");
        assert_eq!(back, src);
    }
}

//! Generated protobuf types (prost) and gRPC stubs (tonic).

pub mod statehouse {
    pub mod v1 {
        tonic::include_proto!("statehouse.v1");
    }
}

pub mod replayscope {
    pub mod v1 {
        tonic::include_proto!("replayscope.v1");
    }
}

/// The FileDescriptorSet of every compiled proto (for reflection and the MCAP schema).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("replayscope_descriptor");

/// The MCAP schema of archived messages: a FileDescriptorSet holding
/// `replayscope/v1/archive.proto` and the files it imports (and nothing else).
pub fn archived_event_schema() -> Vec<u8> {
    use prost::Message as _;
    static SCHEMA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let all = prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
                .expect("the compiled descriptor set decodes");
            let wanted = [
                "google/protobuf/struct.proto",
                "statehouse/v1/statehouse.proto",
                "replayscope/v1/archive.proto",
            ];
            let file = all
                .file
                .into_iter()
                .filter(|f| wanted.contains(&f.name()))
                .map(|mut f| {
                    f.source_code_info = None;
                    f
                })
                .collect();
            prost_types::FileDescriptorSet { file }.encode_to_vec()
        })
        .clone()
}

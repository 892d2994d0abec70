//! Prints the CrawlJob CustomResourceDefinition as YAML.
//!
//! `cargo run -p kubecrawl-api --bin crdgen > crds/crawljobs.kubecrawl.io.yaml`

use kube::CustomResourceExt;
use kubecrawl_api::CrawlJob;

fn main() -> Result<(), serde_yaml::Error> {
    print!("{}", kubecrawl_api::crawljob::crd_yaml()?);
    // Keep the binary honest about which type it renders.
    debug_assert_eq!(CrawlJob::crd_name(), "crawljobs.kubecrawl.io");
    Ok(())
}

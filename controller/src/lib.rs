//! bindery-controller: Kubernetes Service Catalog's `servicecatalog.k8s.io/v1beta1` API, served
//! as CRDs and reconciled against any Open Service Broker over HTTP (it never reaches into a
//! broker's store). Level-based: every pass reads the resource and the broker's answers afresh.

pub mod binding;
pub mod broker;
pub mod conditions;
pub mod context;
pub mod crd;
pub mod http;
pub mod instance;
pub mod leader;
pub mod names;
pub mod object;
pub mod osb;
pub mod parameters;
pub mod run;
pub mod transforms;

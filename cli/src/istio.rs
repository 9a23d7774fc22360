//! Istio resources (typed), filled in below.

//! Diff normalization: what a real API server's defaulting and canonical forms change
//! between Git and live (quantities, int-or-string, Secret `stringData`), so it is not drift.

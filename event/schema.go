package event

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of whocould events as structured CloudEvents: the
// envelope, and the data of each type. Producers in other languages can validate with it; the
// Go Validate is the reference, and the schema agrees with it but for what a schema cannot say
// (lengths count characters, not bytes; an expiry after the event's time; a source in canonical
// URI form; formatting characters outside the Basic Multilingual Plane).
//
// It is generated from the rules Validate enforces: `go test ./event -run TestSchemaUpToDate -update`.
//
//go:embed schema/whocould-events.schema.json
var Schema []byte

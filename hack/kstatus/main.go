// Command kstatus prints the status that kstatus (sigs.k8s.io/cli-utils, as
// used by Flux and kpt) computes for Kubernetes objects: JSON objects in on
// stdin, one JSON line out per object, {"name", "status", "message"}.
//
// Taskmill's tests use it to check the conditions its resources carry are
// read as intended: a Dead Task as Failed, a running one as InProgress.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	decoder := json.NewDecoder(os.Stdin)
	encoder := json.NewEncoder(os.Stdout)
	for {
		var raw json.RawMessage
		if err := decoder.Decode(&raw); err == io.EOF {
			return
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "kstatus: reading an object:", err)
			os.Exit(2)
		}
		// Unstructured's own decoding keeps integers as int64, as kstatus expects.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			fmt.Fprintln(os.Stderr, "kstatus: not an object:", err)
			os.Exit(2)
		}
		result, err := status.Compute(u)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kstatus:", u.GetName(), err)
			os.Exit(1)
		}
		if err := encoder.Encode(verdict{u.GetName(), result.Status.String(), result.Message}); err != nil {
			fmt.Fprintln(os.Stderr, "kstatus: writing:", err)
			os.Exit(2)
		}
	}
}

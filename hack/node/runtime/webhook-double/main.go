// webhook-double is a test double of an admission webhook, run as a pod on the
// real node so that tests/e2e_node can show the API server calling a pod
// through its Service (kube-proxy's translation in the node's namespace)
// before the real webhook's image runs there. It serves HTTPS with the
// certificate mounted from a Secret (/tls) and denies every review, naming
// the pod that answered (HOSTNAME), so the client sees which pod the API
// server reached.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"os"
)

type review struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Request    *request  `json:"request,omitempty"`
	Response   *response `json:"response,omitempty"`
}

type request struct {
	UID string `json:"uid"`
}

type response struct {
	UID     string `json:"uid"`
	Allowed bool   `json:"allowed"`
	Status  status `json:"status"`
}

type status struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func main() {
	pod := os.Getenv("HOSTNAME")
	http.HandleFunc("/validate", func(w http.ResponseWriter, r *http.Request) {
		var in review
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.Request == nil {
			http.Error(w, "not an AdmissionReview", http.StatusBadRequest)
			return
		}
		out := review{APIVersion: in.APIVersion, Kind: in.Kind, Response: &response{
			UID:     in.Request.UID,
			Allowed: false,
			Status:  status{Code: http.StatusForbidden, Message: fmt.Sprintf("denied by webhook-double pod %s", pod)},
		}}
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(out); err != nil {
			log.Print(err)
		}
	})
	log.Printf("webhook-double %s serving on :8443", pod)
	log.Fatal(http.ListenAndServeTLS(":8443", "/tls/tls.crt", "/tls/tls.key", nil))
}

// probe is the workload of tests/e2e_node's pods: it calls the API server the
// way an in-cluster client does (KUBERNETES_SERVICE_HOST/PORT, the projected
// ServiceAccount token and CA), prints one line with the outcome, and then
// stays up so the test can read the pod's status and log.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

func main() {
	for {
		fmt.Println(check())
		time.Sleep(10 * time.Second)
	}
}

// check returns "probe: ok <host:port> <status> <body>" when GET /version
// through the kubernetes Service answers, "probe: error <reason>" otherwise.
func check() string {
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT")
	if host == "" || port == "" {
		return "probe: error KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT unset"
	}
	token, err := os.ReadFile(saDir + "/token")
	if err != nil {
		return "probe: error " + err.Error()
	}
	caPEM, err := os.ReadFile(saDir + "/ca.crt")
	if err != nil {
		return "probe: error " + err.Error()
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return "probe: error no certificate in ca.crt"
	}
	client := &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}
	address := net.JoinHostPort(host, port)
	req, err := http.NewRequest(http.MethodGet, "https://"+address+"/version", nil)
	if err != nil {
		return "probe: error " + err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := client.Do(req)
	if err != nil {
		return "probe: error " + err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Sprintf("probe: ok %s %d %s", address, resp.StatusCode, strings.Join(strings.Fields(string(body)), ""))
}

// Command peer-go is the benchmark's stand-in for hello-path-go: a plain net/http server
// written for this project. It is NOT the original binary (whose code is not used here);
// it only mimics what the original visibly does: flags -mysecret and -listen-addr, exit 1
// unless the secret is the one the "remote service" expects (4321), one line per request
// through the standard log package, "hello from <path>" as the answer, and no signal
// handling of its own (the Go runtime's default applies).
//
// -log-requests=false is an extra of the stand-in, so that the benchmark can compare the
// cost of per-request logging on both sides.
//
// Built by scripts/bench.sh --compare go, as a static binary:
//
//	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o peer-go .
package main

import (
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
)

const expected = "4321"

func main() {
	mysecret := flag.String("mysecret", "1234", "credential for the remote service")
	listenAddr := flag.String("listen-addr", "0.0.0.0:8080", "address to listen on")
	logRequests := flag.Bool("log-requests", true, "log every request")
	flag.Parse()

	log.SetPrefix("[hello-path-go-main] ")
	rule := strings.Repeat("-", 60)
	log.Println(rule)
	log.Println("hello-path-go - a simple web service returning the URL path.")
	log.Println(rule)
	log.Println("Web service initialization...")
	if *mysecret != expected {
		log.Println("Note: mysecret value is **** while expected value is ****.")
		log.Println("FATAL: connection to remote service failed. Check mysecret parameter.")
		os.Exit(1)
	}
	log.Println("Connection to remote service: ok.")

	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if *logRequests {
			log.Printf("%s %s", r.Method, r.URL.Path)
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if r.URL.Path == "/" {
			fmt.Fprint(w, "try to add /test as path\n")
			return
		}
		fmt.Fprintf(w, "hello from %s\n", r.URL.Path)
	})
	log.Printf("Web service accessible at %s", *listenAddr)
	log.Fatal(http.ListenAndServe(*listenAddr, nil))
}

// Command argo-contract evaluates an Argo Rollouts AnalysisTemplate's Web metric against a live
// endpoint with the libraries Argo Rollouts itself uses: k8s.io/client-go/util/jsonpath for
// `jsonPath` and github.com/expr-lang/expr for `successCondition` / `failureCondition`.
//
// It prints one line, `<phase> <value>`, where phase is Successful, Failed, Inconclusive or
// Error, exactly as Argo Rollouts would record the measurement. slogate's integration tests run
// it against the real server to prove the verdict endpoint and deploy/argo agree.
//
// Secrets that arguments take through `valueFrom.secretKeyRef` are given as -secret name/key=v
// (one not given resolves to "", which an open server ignores); the Web provider's `headers`
// are sent with arguments substituted, and -ca-file trusts a CA for an https:// url, as the
// Argo controller would through its own trust store.
//
// A `method: POST` metric sends its `body` or `jsonBody` (arguments substituted), as Argo does.
//
// usage: argo-contract -template deploy/argo/analysis-template.yaml [-metric NAME] -arg k=v ...
//
//	[-secret name/key=value ...] [-ca-file ca.pem]
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"k8s.io/client-go/util/jsonpath"
	"sigs.k8s.io/yaml"
)

type webProvider struct {
	URL            string          `json:"url"`
	JSONPath       string          `json:"jsonPath"`
	TimeoutSeconds int             `json:"timeoutSeconds"`
	Method         string          `json:"method"`
	Body           string          `json:"body"`
	JSONBody       json.RawMessage `json:"jsonBody"`
	Headers        []struct {
		Key   string `json:"key"`
		Value string `json:"value"`
	} `json:"headers"`
}

type metric struct {
	Name             string `json:"name"`
	SuccessCondition string `json:"successCondition"`
	FailureCondition string `json:"failureCondition"`
	Provider         struct {
		Web *webProvider `json:"web"`
	} `json:"provider"`
}

type analysisTemplate struct {
	Kind string `json:"kind"`
	Spec struct {
		Args []struct {
			Name      string  `json:"name"`
			Value     *string `json:"value"`
			ValueFrom *struct {
				SecretKeyRef *struct {
					Name string `json:"name"`
					Key  string `json:"key"`
				} `json:"secretKeyRef"`
			} `json:"valueFrom"`
		} `json:"args"`
		Metrics []metric `json:"metrics"`
	} `json:"spec"`
}

type argList map[string]string

func (a argList) String() string { return fmt.Sprint(map[string]string(a)) }
func (a argList) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("want name=value, got %q", v)
	}
	a[k] = val
	return nil
}

func main() {
	args := argList{}
	secrets := argList{}
	templatePath := flag.String("template", "", "AnalysisTemplate YAML")
	metricName := flag.String("metric", "", "metric name (default: the first web metric)")
	caFile := flag.String("ca-file", "", "PEM CA certificates to trust for https:// urls")
	flag.Var(args, "arg", "template argument name=value (repeatable)")
	flag.Var(secrets, "secret", "Kubernetes secret value name/key=value (repeatable)")
	flag.Parse()

	phase, value, err := run(*templatePath, *metricName, args, secrets, *caFile)
	if err != nil {
		fmt.Printf("Error %s\n", err)
		return
	}
	fmt.Printf("%s %s\n", phase, value)
}

func run(path, name string, args, secrets argList, caFile string) (string, string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	var t analysisTemplate
	// Fields this harness does not model (interval, count, limits) are ignored.
	if err := yaml.Unmarshal(raw, &t); err != nil {
		return "", "", fmt.Errorf("parse %s: %w", path, err)
	}
	if t.Kind != "AnalysisTemplate" && t.Kind != "ClusterAnalysisTemplate" {
		return "", "", fmt.Errorf("%s is a %q, not an AnalysisTemplate", path, t.Kind)
	}
	for _, a := range t.Spec.Args {
		if _, ok := args[a.Name]; !ok && a.ValueFrom != nil && a.ValueFrom.SecretKeyRef != nil {
			ref := a.ValueFrom.SecretKeyRef
			args[a.Name] = secrets[ref.Name+"/"+ref.Key]
			continue
		}
		if _, ok := args[a.Name]; !ok {
			// As Argo does, an argument the caller leaves out takes the template's value.
			if a.Value == nil {
				return "", "", fmt.Errorf("missing template argument %q", a.Name)
			}
			args[a.Name] = *a.Value
		}
	}
	var m *metric
	for i := range t.Spec.Metrics {
		if t.Spec.Metrics[i].Provider.Web != nil && (name == "" || t.Spec.Metrics[i].Name == name) {
			m = &t.Spec.Metrics[i]
			break
		}
	}
	if m == nil {
		return "", "", errors.New("no matching web metric in the template")
	}
	url := substitute(m.Provider.Web.URL, args)

	timeout := time.Duration(m.Provider.Web.TimeoutSeconds) * time.Second
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	client := &http.Client{Timeout: timeout}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return "", "", err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return "", "", fmt.Errorf("no certificate in %s", caFile)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	// As Argo's web provider: GET unless `method` says otherwise; `body` or `jsonBody` (not
	// both, and not with GET), arguments substituted; `jsonBody` sets Content-Type.
	web := m.Provider.Web
	method := http.MethodGet
	if web.Method != "" {
		method = web.Method
	}
	var body io.Reader
	switch {
	case web.Body != "" && web.JSONBody != nil:
		return "", "", errors.New("use either Body or JSONBody; both cannot exists for WebMetric payload")
	case (web.Body != "" || web.JSONBody != nil) && method == http.MethodGet:
		return "", "", errors.New("Body/JSONBody can only be used with POST or PUT WebMetric Method types")
	case web.Body != "":
		body = strings.NewReader(substitute(web.Body, args))
	case web.JSONBody != nil:
		body = strings.NewReader(substitute(string(web.JSONBody), args))
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		return "", "", err
	}
	for _, h := range web.Headers {
		req.Header.Set(h.Key, substitute(h.Value, args))
	}
	if web.JSONBody != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	// Argo records a non-2xx answer as a measurement error, not as a verdict.
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		return "", "", fmt.Errorf("received non 2xx response code: %v", resp.StatusCode)
	}
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	var data interface{}
	if err := json.Unmarshal(answer, &data); err != nil {
		return "", "", fmt.Errorf("response is not JSON: %w", err)
	}
	jp := jsonpath.New("metrics")
	path = m.Provider.Web.JSONPath
	if path == "" {
		path = "{$}"
	}
	if err := jp.Parse(path); err != nil {
		return "", "", err
	}
	results, err := jp.FindResults(data)
	if err != nil {
		return "", "", fmt.Errorf("could not find JSONPath in body: %w", err)
	}
	val, valString, err := firstValue(results)
	if err != nil {
		return "", "", err
	}
	phase, err := evaluate(val, m.SuccessCondition, m.FailureCondition)
	return phase, valString, err
}

// substitute replaces {{args.name}} and {{ args.name }} as Argo's templating does.
func substitute(s string, args argList) string {
	for k, v := range args {
		s = strings.ReplaceAll(s, "{{args."+k+"}}", v)
		s = strings.ReplaceAll(s, "{{ args."+k+" }}", v)
	}
	return s
}

func firstValue(results [][]reflect.Value) (interface{}, string, error) {
	for _, rs := range results {
		for _, r := range rs {
			v := r.Interface()
			b, err := json.Marshal(v)
			return v, string(b), err
		}
	}
	return nil, "", errors.New("result of web metric produced no value")
}

// evaluate follows Argo Rollouts' rules: without a failure condition a false success condition
// fails; without a success condition a false failure condition succeeds; neither true is
// Inconclusive; failure wins.
func evaluate(result interface{}, success, failure string) (string, error) {
	var ok, bad bool
	var err error
	if success != "" {
		if ok, err = cond(result, success); err != nil {
			return "", err
		}
	}
	if failure != "" {
		if bad, err = cond(result, failure); err != nil {
			return "", err
		}
	}
	switch {
	case success == "" && failure == "":
		return "Successful", nil
	case success != "" && failure == "":
		bad = !ok
	case success == "" && failure != "":
		ok = !bad
	}
	if bad {
		return "Failed", nil
	}
	if !ok {
		return "Inconclusive", nil
	}
	return "Successful", nil
}

func cond(result interface{}, condition string) (bool, error) {
	env := map[string]interface{}{
		"result": result,
		"asInt": func(s string) int64 {
			v, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				panic(err)
			}
			return v
		},
		"asFloat": func(s string) float64 {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil {
				panic(err)
			}
			return v
		},
	}
	program, err := expr.Compile(condition, expr.Env(env), expr.AsBool())
	if err != nil {
		return false, err
	}
	out, err := expr.Run(program, env)
	if err != nil {
		return false, err
	}
	return out.(bool), nil
}

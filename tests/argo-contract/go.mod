module slogate.dev/argo-contract

go 1.26.0

require (
	github.com/expr-lang/expr v1.17.8
	k8s.io/client-go v0.37.2
	sigs.k8s.io/yaml v1.6.0
)

require go.yaml.in/yaml/v2 v2.4.4 // indirect

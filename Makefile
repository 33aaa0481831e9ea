# Conveniences; the README's commands need only Go.

.PHONY: test demo ci bench loadbench

test:
	go test ./...

demo:
	go run ./cmd/caddy run --config Caddyfile.example

ci:
	.ci/run

bench:
	go test -run '^$$' -bench . -benchmem ./...

loadbench:
	go run ./bench/loadbench
	go run ./bench/loadbench -scale

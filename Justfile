# Recipes mirror the commands in README.md; they never replace them.

# Build the binary into ./backfill
build:
    go build -o backfill .

# Run the whole test suite as CI does (needs PostgreSQL on 127.0.0.1:5432 and Node.js)
test:
    npm ci --prefix interop
    go test -race -timeout 60m ./...

# What CI runs: start PostgreSQL if needed, vet, test
ci:
    bash .ci/run

# Fetch benchmark: fetch vs. bare websocket read, indigo consumer, read+compress ceiling
bench-fetch:
    go test -run '^$' -bench BenchmarkFetch -benchtime 1x -timeout 30m .

# Load benchmark: load vs. raw COPY ceiling vs. row-by-row floor
bench-load:
    go test -run '^$' -bench BenchmarkLoadLarge -benchtime 1x -timeout 90m .

# Fuzz every decoder of untrusted bytes for a minute each
fuzz:
    go test -run '^$' -fuzz '^FuzzPeekHeader$' -fuzztime 60s -fuzzminimizetime 2s ./decode/
    go test -run '^$' -fuzz '^FuzzDecode$' -fuzztime 60s -fuzzminimizetime 2s ./decode/
    go test -run '^$' -fuzz '^FuzzRecord$' -fuzztime 60s -fuzzminimizetime 2s ./decode/
    go test -run '^$' -fuzz '^FuzzReader$' -fuzztime 60s -fuzzminimizetime 2s ./spool/
    go test -run '^$' -fuzz '^FuzzRecover$' -fuzztime 60s -fuzzminimizetime 2s ./spool/
    go test -run '^$' -fuzz '^FuzzChunkPayload$' -fuzztime 60s -fuzzminimizetime 2s ./spool/

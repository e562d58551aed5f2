// Command ringref answers, with Thanos's own receive hashring code, where series go. It is the
// reference that strata-ring's routing is checked against (cmd/tests/ring_identity.rs).
//
//	ringref route -series FILE CASE.json...
//	    FILE holds one series a line as a JSON array: ["tenant", "name1", "value1", ...] (labels
//	    in the order given, as a remote-write request carries them); "-" reads standard input.
//	    Each CASE file is {"algorithm": "ketama", "replication_factor": 3, "hashrings": [...]},
//	    the hashrings being a hashrings.json. For each case the output is one line "case FILE",
//	    then either "build error: MESSAGE" or one line per series: the endpoint address of each
//	    replica 0..RF-1, tab-separated, a failed lookup written as "!MESSAGE" (once a tenant's
//	    replica failed, its later series repeat that error without asking again).
//	ringref rand SEED COUNT
//	    Prints COUNT values of rand.New(rand.NewSource(SEED)).Uint64(), one a line.
//	ringref seed TENANT [ZONE]
//	    Prints the shuffle-sharding seed of a tenant (and zone).
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/thanos-io/thanos/pkg/receive"
	"github.com/thanos-io/thanos/pkg/store/labelpb"
	"github.com/thanos-io/thanos/pkg/store/storepb/prompb"
)

type routeCase struct {
	Algorithm         string          `json:"algorithm"`
	ReplicationFactor uint64          `json:"replication_factor"`
	Hashrings         json.RawMessage `json:"hashrings"`
}

type series struct {
	tenant string
	ts     *prompb.TimeSeries
}

func main() {
	if len(os.Args) < 2 {
		fail("usage: ringref route -series FILE CASE.json... | ringref rand SEED COUNT | ringref seed TENANT [ZONE]")
	}
	out := bufio.NewWriterSize(os.Stdout, 1<<20)
	defer out.Flush()
	switch os.Args[1] {
	case "route":
		route(out, os.Args[2:])
	case "rand":
		if len(os.Args) != 4 {
			fail("usage: ringref rand SEED COUNT")
		}
		seed, err := strconv.ParseInt(os.Args[2], 10, 64)
		check(err)
		count, err := strconv.Atoi(os.Args[3])
		check(err)
		r := rand.New(rand.NewSource(seed))
		for i := 0; i < count; i++ {
			fmt.Fprintln(out, r.Uint64())
		}
	case "seed":
		if len(os.Args) != 3 && len(os.Args) != 4 {
			fail("usage: ringref seed TENANT [ZONE]")
		}
		zone := ""
		if len(os.Args) == 4 {
			zone = os.Args[3]
		}
		fmt.Fprintln(out, receive.ShuffleShardSeed(os.Args[2], zone))
	default:
		fail("unknown command " + os.Args[1])
	}
}

func route(out *bufio.Writer, args []string) {
	if len(args) < 2 || args[0] != "-series" {
		fail("usage: ringref route -series FILE CASE.json...")
	}
	all := readSeries(args[1])
	for _, path := range args[2:] {
		fmt.Fprintf(out, "case %s\n", path)
		content, err := os.ReadFile(path)
		check(err)
		var c routeCase
		check(json.Unmarshal(content, &c))
		cfg, err := receive.ParseConfig(c.Hashrings)
		if err != nil {
			fmt.Fprintf(out, "build error: %s\n", oneLine(err.Error()))
			continue
		}
		// A registry of its own: shuffle-sharded rings register their cache metrics.
		ring, err := receive.NewMultiHashring(receive.HashringAlgorithm(c.Algorithm), c.ReplicationFactor, cfg, prometheus.NewRegistry())
		if err != nil {
			fmt.Fprintf(out, "build error: %s\n", oneLine(err.Error()))
			continue
		}
		// GetN fails for a tenant before it reads the series (no hashring, a shard that
		// cannot be built, a replica beyond the ring), and a failing shuffle-sharded tenant
		// rebuilds its shard on every call; so the first error of a (tenant, replica) stands
		// for the rest, which keeps a run over 100k series short.
		failed := map[string]string{}
		for _, s := range all {
			for n := uint64(0); n < c.ReplicationFactor; n++ {
				if n > 0 {
					out.WriteByte('\t')
				}
				key := s.tenant + "\x00" + strconv.FormatUint(n, 10)
				if msg, ok := failed[key]; ok {
					out.WriteString(msg)
					continue
				}
				endpoint, err := ring.GetN(s.tenant, s.ts, n)
				if err != nil {
					failed[key] = "!" + oneLine(err.Error())
					out.WriteString(failed[key])
				} else {
					out.WriteString(endpoint.Address)
				}
			}
			out.WriteByte('\n')
		}
		ring.Close()
	}
}

func readSeries(path string) []series {
	var in io.Reader = os.Stdin
	if path != "-" {
		f, err := os.Open(path)
		check(err)
		defer f.Close()
		in = f
	}
	scanner := bufio.NewScanner(in)
	scanner.Buffer(make([]byte, 1<<20), 1<<26)
	var all []series
	for scanner.Scan() {
		var fields []string
		check(json.Unmarshal(scanner.Bytes(), &fields))
		if len(fields)%2 != 1 {
			fail("a series line needs a tenant and name/value pairs: " + scanner.Text())
		}
		lbls := make([]labelpb.ZLabel, 0, len(fields)/2)
		for i := 1; i < len(fields); i += 2 {
			lbls = append(lbls, labelpb.ZLabel{Name: fields[i], Value: fields[i+1]})
		}
		all = append(all, series{tenant: fields[0], ts: &prompb.TimeSeries{Labels: lbls}})
	}
	check(scanner.Err())
	return all
}

func oneLine(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "\t", " ")
}

func check(err error) {
	if err != nil {
		fail(err.Error())
	}
}

func fail(msg string) {
	fmt.Fprintln(os.Stderr, "ringref:", msg)
	os.Exit(2)
}

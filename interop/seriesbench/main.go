// Command seriesbench makes one StoreAPI Series() call the way Thanos's querier makes it (its
// gRPC dial options and codec, responses batched 64 series to a message) and reports what came
// back and how long it took, as one JSON line:
//
//	{"series":N,"chunks":N,"bytes":N,"seconds":S}
//
// bytes counts the protobuf bytes of every SeriesResponse message. The connection is set up
// before the clock starts, so seconds is the call alone: from sending the request to the end
// of the stream. scripts/bench-storeapi.sh runs it against strata receive and thanos receive.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/go-kit/log"
	"github.com/opentracing/opentracing-go"
	"github.com/thanos-io/thanos/pkg/extgrpc"
	"github.com/thanos-io/thanos/pkg/info/infopb"
	"github.com/thanos-io/thanos/pkg/store/storepb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

type matchers []storepb.LabelMatcher

func (m *matchers) String() string { return fmt.Sprint(*m) }

// Set parses name=value, name!=value, name=~regex or name!~regex.
func (m *matchers) Set(s string) error {
	// Two-character operators first, so that "=~" is not read as "=" with a value "~…".
	for _, op := range []struct {
		text string
		typ  storepb.LabelMatcher_Type
	}{{"=~", storepb.LabelMatcher_RE}, {"!~", storepb.LabelMatcher_NRE}, {"!=", storepb.LabelMatcher_NEQ}, {"=", storepb.LabelMatcher_EQ}} {
		if name, value, ok := strings.Cut(s, op.text); ok {
			*m = append(*m, storepb.LabelMatcher{Type: op.typ, Name: name, Value: value})
			return nil
		}
	}
	return fmt.Errorf("matcher %q: want name=value, name!=value, name=~regex or name!~regex", s)
}

func main() {
	var ms matchers
	addr := flag.String("addr", "", "StoreAPI gRPC address, host:port")
	flag.Var(&ms, "match", "label matcher (repeatable)")
	batch := flag.Int64("batch", 64, "response_batch_size (Thanos's querier asks for 64)")
	skipChunks := flag.Bool("skip-chunks", false, "ask for labels only")
	timeout := flag.Duration("timeout", 10*time.Minute, "deadline for the call")
	last := flag.Duration("last", 0, "ask only for the samples of this long before now (0: all time)")
	flag.Parse()
	if *addr == "" || len(ms) == 0 {
		fmt.Fprintln(os.Stderr, "usage: seriesbench -addr host:port -match name=~regex [-match …]")
		os.Exit(2)
	}
	minTime, maxTime := int64(math.MinInt64), int64(math.MaxInt64)
	if *last > 0 {
		maxTime = time.Now().UnixMilli()
		minTime = maxTime - last.Milliseconds()
	}
	if err := run(*addr, ms, *batch, *skipChunks, *timeout, minTime, maxTime); err != nil {
		fmt.Fprintln(os.Stderr, "seriesbench:", err)
		os.Exit(1)
	}
}

func run(addr string, ms matchers, batch int64, skipChunks bool, timeout time.Duration, minTime, maxTime int64) error {
	opts, err := extgrpc.StoreClientGRPCOpts(log.NewNopLogger(), nil, opentracing.NoopTracer{})
	if err != nil {
		return err
	}
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	// An Info call first opens the connection, as the querier's endpoint polling does.
	if _, err := infopb.NewInfoClient(conn).Info(ctx, &infopb.InfoRequest{}); err != nil {
		return fmt.Errorf("info: %w", err)
	}

	req := &storepb.SeriesRequest{
		MinTime:           minTime,
		MaxTime:           maxTime,
		Matchers:          ms,
		SkipChunks:        skipChunks,
		ResponseBatchSize: batch,
	}
	var series, chunks, bytes int
	count := func(s *storepb.Series) {
		series++
		chunks += len(s.Chunks)
	}
	began := time.Now()
	stream, err := storepb.NewStoreClient(conn).Series(ctx, req)
	if err != nil {
		return fmt.Errorf("series: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("series: %w", err)
		}
		bytes += resp.Size()
		switch {
		case resp.GetSeries() != nil:
			count(resp.GetSeries())
		case resp.GetBatch() != nil:
			for _, s := range resp.GetBatch().Series {
				count(s)
			}
		case resp.GetWarning() != "":
			return fmt.Errorf("series: warning from the store: %s", resp.GetWarning())
		}
	}
	seconds := time.Since(began).Seconds()
	return json.NewEncoder(os.Stdout).Encode(map[string]any{"series": series, "chunks": chunks, "bytes": bytes, "seconds": seconds})
}

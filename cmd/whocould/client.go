package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/whocould/whocould/access"
	"github.com/whocould/whocould/internal/backoff"
)

// apiClient talks to a running whocould service (`--server URL`), with the token of --token
// or WHOCOULD_TOKEN.
type apiClient struct {
	base  string
	token string
	hc    *http.Client
}

func newAPIClient(server, token string) (*apiClient, error) {
	if token == "" {
		token = os.Getenv("WHOCOULD_TOKEN")
	}
	if token == "" {
		return nil, usagef("--server needs a token: --token TOKEN or WHOCOULD_TOKEN")
	}
	if !strings.HasPrefix(server, "http://") && !strings.HasPrefix(server, "https://") {
		return nil, usagef("--server %q: want http://HOST:PORT or https://HOST:PORT", server)
	}
	return &apiClient{base: strings.TrimRight(server, "/"), token: token, hc: &http.Client{Timeout: 5 * time.Minute}}, nil
}

// apiError is an answer other than the one expected.
type apiError struct {
	Status int
	Msg    string
}

func (e *apiError) Error() string { return fmt.Sprintf("server answered %d: %s", e.Status, e.Msg) }

// do sends a request and decodes a JSON answer with status want into out (when not nil). It
// tries again, with back-off, when the server cannot be reached or answers 503 (every call it
// makes is idempotent). 4xx answers come back as *apiError, a usage error.
func (c *apiClient) do(ctx context.Context, method, path, contentType string, body []byte, want int, out any) error {
	wait := backoff.Backoff{Min: 200 * time.Millisecond, Max: 10 * time.Second}
	for attempt := 1; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+c.token)
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		resp, err := c.hc.Do(req)
		var data []byte
		if err == nil {
			data, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		retry := err != nil || resp.StatusCode == http.StatusServiceUnavailable
		if retry && attempt < 6 && wait.Wait(ctx) {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", method, c.base+path, err)
		}
		if resp.StatusCode != want {
			var e struct {
				Error string `json:"error"`
			}
			msg := strings.TrimSpace(string(data))
			if json.Unmarshal(data, &e) == nil && e.Error != "" {
				msg = e.Error
			}
			ae := &apiError{Status: resp.StatusCode, Msg: msg}
			if resp.StatusCode >= 400 && resp.StatusCode < 500 {
				return usageError{ae}
			}
			return ae
		}
		if out != nil {
			if err := json.Unmarshal(data, out); err != nil {
				return fmt.Errorf("%s %s: the answer is not what was expected: %w", method, c.base+path, err)
			}
		}
		return nil
	}
}

// remoteQuerier asks a running whocould's API (GET /v1/who-could, ...), so that the query
// commands work with --server exactly as on a data directory.
type remoteQuerier struct{ c *apiClient }

var _ access.Querier = remoteQuerier{}

func (r remoteQuerier) ask(ctx context.Context, what string, q access.Query, out any) error {
	v := url.Values{}
	set := func(k, val string) {
		if val != "" {
			v.Set(k, val)
		}
	}
	set("tenant", q.Tenant)
	set("principal", q.Principal)
	set("action", q.Action)
	set("resource", q.Resource)
	if what == access.AskHistory {
		set("from", fmtTime(q.From))
		set("to", fmtTime(q.To))
	} else {
		set("at", fmtTime(q.At))
	}
	if q.KnownAt != nil {
		set("known_at", fmtTime(*q.KnownAt))
	}
	return r.c.do(ctx, http.MethodGet, "/v1/"+what+"?"+v.Encode(), "", nil, http.StatusOK, out)
}

func (r remoteQuerier) WhoCould(ctx context.Context, q access.Query) (a access.WhoCould, err error) {
	return a, r.ask(ctx, access.AskWhoCould, q, &a)
}

func (r remoteQuerier) WhatCould(ctx context.Context, q access.Query) (a access.WhatCould, err error) {
	return a, r.ask(ctx, access.AskWhatCould, q, &a)
}

func (r remoteQuerier) Explain(ctx context.Context, q access.Query) (a access.Explain, err error) {
	return a, r.ask(ctx, access.AskExplain, q, &a)
}

func (r remoteQuerier) History(ctx context.Context, q access.Query) (a access.History, err error) {
	return a, r.ask(ctx, access.AskHistory, q, &a)
}

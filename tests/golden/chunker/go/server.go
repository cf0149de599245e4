// Package server exposes the index over HTTP.
package server

import (
	"encoding/json"
	"net/http"
	"sync"
)

const maxResults = 50

// Hit is one search result.
type Hit struct {
	Path   string  `json:"path"`
	Line   int     `json:"line"`
	Symbol string  `json:"symbol"`
	Score  float64 `json:"score"`
}

// Searcher answers queries.
type Searcher interface {
	Search(query string, limit int) ([]Hit, error)
}

// Server serves search requests and counts them.
type Server struct {
	mu       sync.Mutex
	searcher Searcher
	requests int
}

// New returns a server backed by searcher.
func New(searcher Searcher) *Server {
	return &Server{searcher: searcher}
}

// ServeHTTP answers GET /search?q=...
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	query := r.URL.Query().Get("q")
	if query == "" {
		http.Error(w, "missing q", http.StatusBadRequest)
		return
	}
	hits, err := s.searcher.Search(query, maxResults)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(hits)
}

// Requests returns how many requests the server has seen.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

func clamp(limit int) int {
	if limit <= 0 || limit > maxResults {
		return maxResults
	}
	return limit
}

import React, { useEffect, useState } from "react";

/** Props of the search widget. */
export interface SearchProps {
  placeholder?: string;
  onSelect: (path: string, line: number) => void;
  search: (query: string) => Promise<Hit[]>;
}

export interface Hit {
  path: string;
  line: number;
  symbol: string | null;
  score: number;
}

// Debounce typing so the server is not asked on every key press.
export function useDebounced<T>(value: T, delayMs: number): T {
  const [debounced, setDebounced] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setDebounced(value), delayMs);
    return () => clearTimeout(timer);
  }, [value, delayMs]);
  return debounced;
}

export const SearchWidget: React.FC<SearchProps> = ({ placeholder = "Search", onSelect, search }) => {
  const [query, setQuery] = useState("");
  const [hits, setHits] = useState<Hit[]>([]);
  const debounced = useDebounced(query, 150);

  useEffect(() => {
    let cancelled = false;
    if (debounced.trim()) {
      search(debounced).then((found) => {
        if (!cancelled) setHits(found);
      });
    } else {
      setHits([]);
    }
    return () => {
      cancelled = true;
    };
  }, [debounced, search]);

  return (
    <div className="search-widget">
      <input value={query} placeholder={placeholder} onChange={(e) => setQuery(e.target.value)} />
      <ul>
        {hits.map((hit) => (
          <li key={`${hit.path}:${hit.line}`} onClick={() => onSelect(hit.path, hit.line)}>
            <span className="symbol">{hit.symbol ?? hit.path}</span>
            <span className="score">{hit.score.toFixed(2)}</span>
          </li>
        ))}
      </ul>
    </div>
  );
};

export default SearchWidget;

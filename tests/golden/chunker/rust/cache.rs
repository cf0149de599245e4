//! A bounded cache of embeddings keyed by content hash.

use std::collections::{HashMap, VecDeque};
use std::fmt;

/// The largest number of vectors kept by default.
pub const DEFAULT_CAPACITY: usize = 1024;

/// A cache that evicts the oldest entry first.
#[derive(Debug, Default)]
pub struct EmbeddingCache {
    vectors: HashMap<String, Vec<f32>>,
    order: VecDeque<String>,
    capacity: usize,
}

pub enum Lookup {
    Hit(Vec<f32>),
    Miss,
}

impl EmbeddingCache {
    /// Create a cache holding at most `capacity` vectors.
    pub fn new(capacity: usize) -> Self {
        Self { vectors: HashMap::new(), order: VecDeque::new(), capacity }
    }

    /// Return the vector for `hash`, if cached.
    pub fn get(&self, hash: &str) -> Lookup {
        match self.vectors.get(hash) {
            Some(vector) => Lookup::Hit(vector.clone()),
            None => Lookup::Miss,
        }
    }

    /// Insert a vector, evicting the oldest entries when full.
    #[inline]
    pub fn insert(&mut self, hash: String, vector: Vec<f32>) {
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.vectors.remove(&oldest);
                }
                None => break,
            }
        }
        self.order.push_back(hash.clone());
        self.vectors.insert(hash, vector);
    }
}

impl fmt::Display for EmbeddingCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EmbeddingCache({} of {} vectors)", self.vectors.len(), self.capacity)
    }
}

pub trait Embedder {
    fn embed(&self, texts: &[String]) -> Vec<Vec<f32>>;
}

/// Cosine similarity of two vectors of the same length.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b)).max(f32::EPSILON)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_oldest() {
        let mut cache = EmbeddingCache::new(1);
        cache.insert("a".into(), vec![1.0]);
        cache.insert("b".into(), vec![2.0]);
        assert!(matches!(cache.get("a"), Lookup::Miss));
    }
}

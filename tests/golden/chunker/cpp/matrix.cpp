// Dense matrices for the ranking code.
#include <cstddef>
#include <stdexcept>
#include <vector>

namespace rank {

/// A row-major matrix of floats.
class Matrix {
public:
    Matrix(std::size_t rows, std::size_t cols) : rows_(rows), cols_(cols), data_(rows * cols) {}

    float& at(std::size_t r, std::size_t c) { return data_[r * cols_ + c]; }

    float at(std::size_t r, std::size_t c) const { return data_[r * cols_ + c]; }

    /// Multiply by another matrix; throws when the shapes do not match.
    Matrix multiply(const Matrix& other) const {
        if (cols_ != other.rows_) {
            throw std::invalid_argument("shape mismatch");
        }
        Matrix out(rows_, other.cols_);
        for (std::size_t i = 0; i < rows_; ++i) {
            for (std::size_t k = 0; k < cols_; ++k) {
                const float a = at(i, k);
                for (std::size_t j = 0; j < other.cols_; ++j) {
                    out.at(i, j) += a * other.at(k, j);
                }
            }
        }
        return out;
    }

    std::size_t rows() const { return rows_; }

private:
    std::size_t rows_;
    std::size_t cols_;
    std::vector<float> data_;
};

struct Shape {
    std::size_t rows;
    std::size_t cols;
};

template <typename T>
T clamp(T value, T low, T high) {
    return value < low ? low : (value > high ? high : value);
}

// Normalise each row to unit length so that dot products are cosines.
void normalise_rows(Matrix& m, std::size_t cols) {
    for (std::size_t r = 0; r < m.rows(); ++r) {
        float norm = 0.0f;
        for (std::size_t c = 0; c < cols; ++c) {
            norm += m.at(r, c) * m.at(r, c);
        }
        if (norm == 0.0f) {
            continue;
        }
        for (std::size_t c = 0; c < cols; ++c) {
            m.at(r, c) /= norm;
        }
    }
}

}  // namespace rank

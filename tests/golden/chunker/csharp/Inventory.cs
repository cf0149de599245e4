using System;
using System.Collections.Generic;
using System.Linq;

namespace Shop.Stock
{
    /// <summary>Tracks how many units of each product are in stock.</summary>
    [Serializable]
    public class Inventory
    {
        private readonly Dictionary<string, int> _units = new();

        public event EventHandler<string>? OutOfStock;

        public int this[string sku] => _units.TryGetValue(sku, out var n) ? n : 0;

        /// <summary>Add units of a product, creating it when unknown.</summary>
        public void Receive(string sku, int units)
        {
            if (units <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(units), "must be positive");
            }
            _units[sku] = this[sku] + units;
        }

        /// <summary>Take units out; false when there are not enough.</summary>
        public bool TryTake(string sku, int units)
        {
            var available = this[sku];
            if (available < units)
            {
                return false;
            }
            _units[sku] = available - units;
            if (_units[sku] == 0)
            {
                OutOfStock?.Invoke(this, sku);
            }
            return true;
        }

        public IEnumerable<string> LowStock(int threshold) =>
            _units.Where(pair => pair.Value < threshold).Select(pair => pair.Key).OrderBy(sku => sku);
    }

    public interface IPricing
    {
        decimal PriceOf(string sku);
    }

    public record Product(string Sku, string Name, decimal Price);

    public enum Unit
    {
        Piece,
        Kilogram,
        Litre,
    }
}

package com.example.shop;

import java.util.ArrayList;
import java.util.List;
import java.util.Optional;

/**
 * Places and cancels orders, keeping stock in sync.
 */
public class OrderService {
    private static final int MAX_ITEMS = 100;

    private final Inventory inventory;
    private final List<Order> orders = new ArrayList<>();

    public OrderService(Inventory inventory) {
        this.inventory = inventory;
    }

    /**
     * Place an order when every item is in stock.
     *
     * @param items the items to order
     * @return the order, or empty when something is out of stock
     */
    @Transactional
    public Optional<Order> place(List<Item> items) {
        if (items.isEmpty() || items.size() > MAX_ITEMS) {
            throw new IllegalArgumentException("an order holds 1 to " + MAX_ITEMS + " items");
        }
        for (Item item : items) {
            if (inventory.available(item.sku()) < item.quantity()) {
                return Optional.empty();
            }
        }
        items.forEach(item -> inventory.reserve(item.sku(), item.quantity()));
        Order order = new Order(orders.size() + 1, items);
        orders.add(order);
        return Optional.of(order);
    }

    // Cancelling releases the reserved stock.
    public boolean cancel(int orderId) {
        return orders.removeIf(order -> {
            if (order.id() != orderId) {
                return false;
            }
            order.items().forEach(item -> inventory.release(item.sku(), item.quantity()));
            return true;
        });
    }

    public int count() {
        return orders.size();
    }

    public record Item(String sku, int quantity) {}

    public interface Inventory {
        int available(String sku);

        void reserve(String sku, int quantity);

        void release(String sku, int quantity);
    }

    enum Status {
        OPEN,
        SHIPPED,
        CANCELLED;

        boolean isFinal() {
            return this != OPEN;
        }
    }
}

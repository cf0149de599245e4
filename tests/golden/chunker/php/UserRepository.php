<?php

declare(strict_types=1);

namespace App\Repository;

use App\Entity\User;
use PDO;

interface Repository
{
    public function find(int $id): ?object;
}

/**
 * Loads and stores users in the database.
 */
#[Service(name: "users")]
final class UserRepository implements Repository
{
    private const TABLE = 'users';

    public function __construct(private PDO $pdo)
    {
    }

    public function find(int $id): ?User
    {
        $statement = $this->pdo->prepare('SELECT * FROM ' . self::TABLE . ' WHERE id = :id');
        $statement->execute(['id' => $id]);
        $row = $statement->fetch(PDO::FETCH_ASSOC);
        return $row === false ? null : User::fromRow($row);
    }

    /**
     * Save a user: insert when new, update otherwise.
     */
    public function save(User $user): void
    {
        if ($user->id === null) {
            $statement = $this->pdo->prepare('INSERT INTO users (email, name) VALUES (:email, :name)');
            $statement->execute(['email' => $user->email, 'name' => $user->name]);
            $user->id = (int) $this->pdo->lastInsertId();
            return;
        }
        $statement = $this->pdo->prepare('UPDATE users SET email = :email, name = :name WHERE id = :id');
        $statement->execute(['email' => $user->email, 'name' => $user->name, 'id' => $user->id]);
    }
}

trait Timestamps
{
    public function touch(): void
    {
        $this->updatedAt = new \DateTimeImmutable();
    }
}

function normalize_email(string $email): string
{
    $email = trim($email);
    [$local, $domain] = explode('@', $email, 2) + [1 => ''];
    return $local . '@' . strtolower($domain);
}

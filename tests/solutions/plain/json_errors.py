"""JSON answers for the APIs' errors: Flask's own error pages are HTML."""

import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException


def answer_errors_in_json(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return jsonify(status=error.name), error.code

    @app.errorhandler(redis.RedisError)
    def redis_error(error: redis.RedisError):
        return jsonify(status="Redis is not available"), 503

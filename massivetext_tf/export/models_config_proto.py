"""The real `tensorflow.serving.ModelServerConfig` message, with or without
`tensorflow-serving-api`: `export.models_config` checks every merge with it."""
import base64

# Serialized FileDescriptorProtos of tensorflow_serving/config/{log_collector_config,
# file_system_storage_path_source,logging_config,model_server_config}.proto, from the
# tensorflow-serving-api 2.21.0 wheel (Apache License 2.0), used when that package is not
# installed. They depend only on google/protobuf/any.proto.
_DESCRIPTORS = (
    # tensorflow_serving/config/log_collector_config.proto
    (
        "CjR0ZW5zb3JmbG93X3NlcnZpbmcvY29uZmlnL2xvZ19jb2xsZWN0b3JfY29uZmlnLnByb3RvEhJ0ZW5zb3JmbG93"
        "LnNlcnZpbmciOwoSTG9nQ29sbGVjdG9yQ29uZmlnEgwKBHR5cGUYASABKAkSFwoPZmlsZW5hbWVfcHJlZml4GAIg"
        "ASgJQgP4AQFiBnByb3RvMw=="
    ),
    # tensorflow_serving/config/file_system_storage_path_source.proto
    (
        "Cj90ZW5zb3JmbG93X3NlcnZpbmcvY29uZmlnL2ZpbGVfc3lzdGVtX3N0b3JhZ2VfcGF0aF9zb3VyY2UucHJvdG8S"
        "EnRlbnNvcmZsb3cuc2VydmluZyLeBgohRmlsZVN5c3RlbVN0b3JhZ2VQYXRoU291cmNlQ29uZmlnEloKCXNlcnZh"
        "YmxlcxgFIAMoCzJHLnRlbnNvcmZsb3cuc2VydmluZy5GaWxlU3lzdGVtU3RvcmFnZVBhdGhTb3VyY2VDb25maWcu"
        "U2VydmFibGVUb01vbml0b3ISJQodZmlsZV9zeXN0ZW1fcG9sbF93YWl0X3NlY29uZHMYAyABKAMSLAogZmFpbF9p"
        "Zl96ZXJvX3ZlcnNpb25zX2F0X3N0YXJ0dXAYBCABKAhCAhgBEigKIHNlcnZhYmxlX3ZlcnNpb25zX2Fsd2F5c19w"
        "cmVzZW50GAYgASgIGp0DChVTZXJ2YWJsZVZlcnNpb25Qb2xpY3kSZAoGbGF0ZXN0GGQgASgLMlIudGVuc29yZmxv"
        "dy5zZXJ2aW5nLkZpbGVTeXN0ZW1TdG9yYWdlUGF0aFNvdXJjZUNvbmZpZy5TZXJ2YWJsZVZlcnNpb25Qb2xpY3ku"
        "TGF0ZXN0SAASXgoDYWxsGGUgASgLMk8udGVuc29yZmxvdy5zZXJ2aW5nLkZpbGVTeXN0ZW1TdG9yYWdlUGF0aFNv"
        "dXJjZUNvbmZpZy5TZXJ2YWJsZVZlcnNpb25Qb2xpY3kuQWxsSAASaAoIc3BlY2lmaWMYZiABKAsyVC50ZW5zb3Jm"
        "bG93LnNlcnZpbmcuRmlsZVN5c3RlbVN0b3JhZ2VQYXRoU291cmNlQ29uZmlnLlNlcnZhYmxlVmVyc2lvblBvbGlj"
        "eS5TcGVjaWZpY0gAGh4KBkxhdGVzdBIUCgxudW1fdmVyc2lvbnMYASABKA0aBQoDQWxsGhwKCFNwZWNpZmljEhAK"
        "CHZlcnNpb25zGAEgAygDQg8KDXBvbGljeV9jaG9pY2UasQEKEVNlcnZhYmxlVG9Nb25pdG9yEhUKDXNlcnZhYmxl"
        "X25hbWUYASABKAkSEQoJYmFzZV9wYXRoGAIgASgJEmwKF3NlcnZhYmxlX3ZlcnNpb25fcG9saWN5GAQgASgLMksu"
        "dGVuc29yZmxvdy5zZXJ2aW5nLkZpbGVTeXN0ZW1TdG9yYWdlUGF0aFNvdXJjZUNvbmZpZy5TZXJ2YWJsZVZlcnNp"
        "b25Qb2xpY3lKBAgDEARKBAgBEAJKBAgCEANiBnByb3RvMw=="
    ),
    # tensorflow_serving/config/logging_config.proto
    (
        "Ci50ZW5zb3JmbG93X3NlcnZpbmcvY29uZmlnL2xvZ2dpbmdfY29uZmlnLnByb3RvEhJ0ZW5zb3JmbG93LnNlcnZp"
        "bmcaGWdvb2dsZS9wcm90b2J1Zi9hbnkucHJvdG8aNHRlbnNvcmZsb3dfc2VydmluZy9jb25maWcvbG9nX2NvbGxl"
        "Y3Rvcl9jb25maWcucHJvdG8iYgoVUGVyVGFza1NhbXBsaW5nQ29uZmlnEgoKAmRjGAEgASgJEhcKCnRhc2tfaW5k"
        "ZXgYAiABKAVIAIgBARIVCg1zYW1wbGluZ19yYXRlGAMgASgBQg0KC190YXNrX2luZGV4IuABCg5TYW1wbGluZ0Nv"
        "bmZpZxIVCg1zYW1wbGluZ19yYXRlGAEgASgBEkwKGXBlcl90YXNrX3NhbXBsaW5nX2NvbmZpZ3MYAyADKAsyKS50"
        "ZW5zb3JmbG93LnNlcnZpbmcuUGVyVGFza1NhbXBsaW5nQ29uZmlnEhIKCmF0dHJpYnV0ZXMYAiABKAUiVQoKQXR0"
        "cmlidXRlcxIQCgxBVFRSX0RFRkFVTFQQABIXChNBVFRSX1JFUVVFU1RfT1JJR0lOEAESHAoYQVRUUl9SRVFVRVNU"
        "X0NSSVRJQ0FMSVRZEAIixwEKDUxvZ2dpbmdDb25maWcSRAoUbG9nX2NvbGxlY3Rvcl9jb25maWcYASABKAsyJi50"
        "ZW5zb3JmbG93LnNlcnZpbmcuTG9nQ29sbGVjdG9yQ29uZmlnEjsKD3NhbXBsaW5nX2NvbmZpZxgCIAEoCzIiLnRl"
        "bnNvcmZsb3cuc2VydmluZy5TYW1wbGluZ0NvbmZpZxIzChVjdXN0b21fbG9nZ2luZ19jb25maWcYAyABKAsyFC5n"
        "b29nbGUucHJvdG9idWYuQW55QgP4AQFiBnByb3RvMw=="
    ),
    # tensorflow_serving/config/model_server_config.proto
    (
        "CjN0ZW5zb3JmbG93X3NlcnZpbmcvY29uZmlnL21vZGVsX3NlcnZlcl9jb25maWcucHJvdG8SEnRlbnNvcmZsb3cu"
        "c2VydmluZxoZZ29vZ2xlL3Byb3RvYnVmL2FueS5wcm90bxo/dGVuc29yZmxvd19zZXJ2aW5nL2NvbmZpZy9maWxl"
        "X3N5c3RlbV9zdG9yYWdlX3BhdGhfc291cmNlLnByb3RvGi50ZW5zb3JmbG93X3NlcnZpbmcvY29uZmlnL2xvZ2dp"
        "bmdfY29uZmlnLnByb3RvIrEDCgtNb2RlbENvbmZpZxIMCgRuYW1lGAEgASgJEhEKCWJhc2VfcGF0aBgCIAEoCRI1"
        "Cgptb2RlbF90eXBlGAMgASgOMh0udGVuc29yZmxvdy5zZXJ2aW5nLk1vZGVsVHlwZUICGAESFgoObW9kZWxfcGxh"
        "dGZvcm0YBCABKAkSaQoUbW9kZWxfdmVyc2lvbl9wb2xpY3kYByABKAsySy50ZW5zb3JmbG93LnNlcnZpbmcuRmls"
        "ZVN5c3RlbVN0b3JhZ2VQYXRoU291cmNlQ29uZmlnLlNlcnZhYmxlVmVyc2lvblBvbGljeRJKCg52ZXJzaW9uX2xh"
        "YmVscxgIIAMoCzIyLnRlbnNvcmZsb3cuc2VydmluZy5Nb2RlbENvbmZpZy5WZXJzaW9uTGFiZWxzRW50cnkSOQoO"
        "bG9nZ2luZ19jb25maWcYBiABKAsyIS50ZW5zb3JmbG93LnNlcnZpbmcuTG9nZ2luZ0NvbmZpZxo0ChJWZXJzaW9u"
        "TGFiZWxzRW50cnkSCwoDa2V5GAEgASgJEg0KBXZhbHVlGAIgASgDOgI4AUoECAUQBkoECAkQCiJCCg9Nb2RlbENv"
        "bmZpZ0xpc3QSLwoGY29uZmlnGAEgAygLMh8udGVuc29yZmxvdy5zZXJ2aW5nLk1vZGVsQ29uZmlnIpQBChFNb2Rl"
        "bFNlcnZlckNvbmZpZxJAChFtb2RlbF9jb25maWdfbGlzdBgBIAEoCzIjLnRlbnNvcmZsb3cuc2VydmluZy5Nb2Rl"
        "bENvbmZpZ0xpc3RIABIzChNjdXN0b21fbW9kZWxfY29uZmlnGAIgASgLMhQuZ29vZ2xlLnByb3RvYnVmLkFueUgA"
        "QggKBmNvbmZpZypOCglNb2RlbFR5cGUSHgoWTU9ERUxfVFlQRV9VTlNQRUNJRklFRBAAGgIIARISCgpURU5TT1JG"
        "TE9XEAEaAggBEg0KBU9USEVSEAIaAggBQgP4AQFiBnByb3RvMw=="
    ),
)


_CLASS = None


def model_server_config_class():
    """`tensorflow.serving.ModelServerConfig`: from `tensorflow-serving-api` if installed,
    otherwise built from the embedded descriptors in a private pool."""
    try:
        from tensorflow_serving.config import model_server_config_pb2

        return model_server_config_pb2.ModelServerConfig
    except ImportError:
        pass
    global _CLASS
    if _CLASS is None:
        from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory

        pool = descriptor_pool.DescriptorPool()
        any_proto = descriptor_pb2.FileDescriptorProto()
        any_pb2.DESCRIPTOR.CopyToProto(any_proto)
        pool.Add(any_proto)
        for chunks in _DESCRIPTORS:
            pool.Add(descriptor_pb2.FileDescriptorProto.FromString(base64.b64decode("".join(chunks))))
        _CLASS = message_factory.GetMessageClass(
            pool.FindMessageTypeByName("tensorflow.serving.ModelServerConfig")
        )
    return _CLASS

from .face_embedding_neck import FaceEmbeddingNeck

__all__ = ['FaceEmbeddingNeck']
